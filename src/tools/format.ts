/** Human-readable numbers for progress lines and reports. */

/** `1234` → `1234`, `56789` → `56.8k`, `15000000` → `15.0M`. */
export function formatCount(n: number): string {
  const a = Math.abs(n);
  if (a < 10_000) return String(Math.round(n));
  if (a < 1e6) return `${(n / 1e3).toFixed(1)}k`;
  if (a < 1e9) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e9).toFixed(2)}G`;
}

/** `512` → `512B`, `1536` → `1.5KB`, `209715200` → `200.0MB` (powers of 1024, like `--size` flags). */
export function formatBytes(n: number): string {
  const a = Math.abs(n);
  if (a < 1024) return `${Math.round(n)}B`;
  if (a < 1024 ** 2) return `${(n / 1024).toFixed(1)}KB`;
  if (a < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)}MB`;
  return `${(n / 1024 ** 3).toFixed(2)}GB`;
}

/** `4.2` → `4s`, `65` → `1m05s`, `3720` → `1h02m`; for ETAs and elapsed times. */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
