/**
 * A daemon tuned for tests: small batches, short windows and fast retries, on the test env's key prefix and
 * channel `{prefix}updated:{id}`, with a subscriber connection named after the test (so a test can kill it).
 */
import type * as Daemon from "../../src/sync/Daemon.js"
import { defaultFullSyncOptions } from "../../src/sync/FullSync.js"
import { type TestEnv, testWriteOptions } from "./Servers.js"

export const testDaemonOptions = (
  env: TestEnv,
  name: string,
  overrides: Partial<Daemon.DaemonOptions> = {}
): Daemon.DaemonOptions => ({
  keyPrefix: env.prefix,
  channelPrefix: `${env.prefix}updated:`,
  keyspaceNotifications: true,
  expirySweepWindow: "1 minute",
  connectionName: `rps-test-${name}`,
  fullSync: { ...defaultFullSyncOptions(testWriteOptions.retry), scanCount: 100 },
  pipeline: {
    batchSize: 100,
    batchWindow: "20 millis",
    maxBatchesPerSecond: 100,
    concurrency: 2,
    maxPending: 10_000,
    retryBaseDelay: "100 millis",
    retryMaxDelay: "500 millis",
    reconcileInterval: "1 hour",
    shutdownTimeout: "5 seconds"
  },
  ...overrides
})
