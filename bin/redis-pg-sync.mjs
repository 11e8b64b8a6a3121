#!/usr/bin/env node
// Runs the CLI: from TypeScript sources in a checkout (through tsx, a development dependency), or from the
// compiled dist/main.js (`npm run build`) when there are no sources (a production install or the Docker image).
import { existsSync } from "node:fs"

const source = new URL("../src/main.ts", import.meta.url)
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api")
  register()
  await import(source.href)
} else {
  await import(new URL("../dist/main.js", import.meta.url).href)
}
