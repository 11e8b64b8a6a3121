/** The program's version, as `--version`, the metrics' `target_info` and package.json say it. */
export const VERSION = "0.1.0"
