%% The comet app from Richard Jones' "A Million-user Comet Application with Mochiweb":
%% part 2's mochiconntest_web.erl.3 (router login, proc_lib:hibernate between messages) with
%% part 1's welcome chunk, written against mochiweb 3 (explicit mochiweb_request:/
%% mochiweb_response: calls: OTP 21+ no longer runs the article's `Req:get(path)` tuple calls
%% without -compile(tuple_calls)).
%%
%% Added for the throughput benchmark, not in the article: POST /publish, whose body is one id
%% a line; each line is one router:send(Id, <<"x">>), and the answer is the delivered total.
-module(mochiconntest_web).

-export([start/1, stop/0, loop/2, feed/3]).

% A publish body of 15,000 ids is ~100 KB; mochiweb's own default cap is 1 MB.
-define(MAX_PUBLISH_BODY, 64 * 1024 * 1024).

%% External API

start(Options) ->
    {DocRoot, Options1} = get_option(docroot, Options),
    Loop = fun (Req) ->
                   ?MODULE:loop(Req, DocRoot)
           end,
    % The article sets 1 million (mochiweb's default is 2048); this machine's 20,000 fds per
    % process bound it long before 100,000.
    mochiweb_http:start([{max, 100000}, {name, ?MODULE}, {loop, Loop} | Options1]).

stop() ->
    mochiweb_http:stop(?MODULE).

loop(Req, _DocRoot) ->
    "/" ++ Path = mochiweb_request:get(path, Req),
    case mochiweb_request:get(method, Req) of
        Method when Method =:= 'GET'; Method =:= 'HEAD' ->
            case Path of
                "test/" ++ IdStr ->
                    Response = mochiweb_request:ok({"text/html; charset=utf-8",
                                                    [{"Server","Mochiweb-Test"}],
                                                    chunked}, Req),
                    Id = to_id(IdStr),
                    router:login(Id, self()),
                    % Welcome after the login (part 1 had no router), so a client that has
                    % read it knows a publish will reach it.
                    mochiweb_response:write_chunk("Mochiconntest welcomes you! Your Id: "
                                                  ++ IdStr ++ "\n", Response),
                    % Hibernate this process until it receives a message:
                    proc_lib:hibernate(?MODULE, feed, [Response, Id, 1]);
                _ ->
                    mochiweb_request:not_found(Req)
            end;
        'POST' ->
            case Path of
                "publish" ->
                    publish(Req);
                _ ->
                    mochiweb_request:not_found(Req)
            end;
        _ ->
            mochiweb_request:respond({501, [], []}, Req)
    end.

feed(Response, Id, N) ->
    receive
        {router_msg, Msg} ->
            Html = io_lib:format("Recvd msg #~w: '~s'<br/>", [N, Msg]),
            mochiweb_response:write_chunk(Html, Response)
    end,
    % Hibernate this process until it receives a message:
    proc_lib:hibernate(?MODULE, feed, [Response, Id, N+1]).

%% Internal API

% One router:send per line, in order, so the cost is the article's: one gen_server call each.
publish(Req) ->
    Body = case mochiweb_request:recv_body(?MAX_PUBLISH_BODY, Req) of
               undefined -> <<>>;
               B -> B
           end,
    Lines = binary:split(Body, [<<"\r\n">>, <<"\n">>], [global, trim_all]),
    Count = lists:foldl(fun (Line, Acc) ->
                                {ok, N} = router:send(to_id(binary_to_list(Line)), <<"x">>),
                                Acc + N
                        end, 0, Lines),
    mochiweb_request:ok({"text/plain", integer_to_list(Count)}, Req).

% The article logs in with an integer ("123" -> 123); an id that is not a number stays a
% binary instead of all such ids becoming the atom `error`. Both routes parse alike.
to_id(IdStr) ->
    case string:to_integer(IdStr) of
        {Int, _} when is_integer(Int) -> Int;
        _ -> list_to_binary(IdStr)
    end.

get_option(Option, Options) ->
    {proplists:get_value(Option, Options), proplists:delete(Option, Options)}.
