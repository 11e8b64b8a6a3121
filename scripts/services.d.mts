export interface ServicesOptions {
  /** data dir; default $RPS_DATA_DIR, else <repo>/.data */
  dir?: string;
  /** no progress lines */
  quiet?: boolean;
  /** progress sink; default: a line on stderr */
  log?: (line: string) => void;
}
export declare function resolveDir(opts?: ServicesOptions): string;
export declare function start(opts?: ServicesOptions): Promise<{ redisUrl: string; databaseUrl: string; reused: boolean }>;
export declare function stop(opts?: ServicesOptions): Promise<{ redisStopped: boolean; postgresStopped: boolean }>;
export declare function reset(opts?: ServicesOptions): Promise<{ removed: boolean }>;
export declare function status(opts?: ServicesOptions): Promise<{
  dir: string;
  running: boolean;
  redisUrl: string | null;
  databaseUrl: string | null;
  redis: { running: boolean; pid: number | null; port: number | null; version: string | null };
  postgres: { running: boolean; pid: number | null; port: number | null; version: string | null; dataDir: string; error?: string };
}>;
