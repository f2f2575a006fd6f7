%% Starts the benchmark's copy of the article's app in one VM: the router, then mochiweb on
%% 127.0.0.1:Port (0: any free port), then prints "ready <port>" for the launcher
%% (src/bench/harness/peers.ts) to wait on. Run as:
%%
%%   erl -noshell -noinput -pa EBIN -run mochiconntest start PORT
-module(mochiconntest).

-export([start/1]).

start([PortStr]) ->
    Port = list_to_integer(PortStr),
    {ok, _} = router:start(),
    {ok, _} = mochiconntest_web:start([{ip, {127, 0, 0, 1}}, {port, Port},
                                        % 15,000 streams connect in a burst: mochiweb's
                                        % default backlog of 128 would drop SYNs.
                                        {backlog, 4096},
                                        % mochiweb links its server to the caller by
                                        % default, and this caller (erl -run) exits.
                                        {link, false}]),
    Listening = mochiweb_socket_server:get(mochiconntest_web, port),
    io:format("ready ~w~n", [Listening]).
