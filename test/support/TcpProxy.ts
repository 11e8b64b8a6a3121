/**
 * A TCP proxy on a loopback port to a target server, that a test can cut (every connection dropped, new ones
 * refused) and restore: PostgreSQL "going away" for one client, without stopping the server other tests share.
 */
import { Effect } from "effect"
import net from "node:net"

export interface TcpProxy {
  readonly port: number
  /** Drops every open connection and refuses new ones until `restore`. */
  readonly cut: Effect.Effect<void>
  readonly restore: Effect.Effect<void>
}

export const make = (targetHost: string, targetPort: number) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: TcpProxy; close: () => void }>((resume) => {
      const sockets = new Set<net.Socket>()
      let up = true
      const server = net.createServer((client) => {
        if (!up) return client.destroy()
        const upstream = net.connect(targetPort, targetHost)
        sockets.add(client).add(upstream)
        const drop = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on("error", drop).on("close", drop)
        upstream.on("error", drop).on("close", drop)
        client.pipe(upstream).pipe(client)
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as net.AddressInfo).port
        resume(Effect.succeed({
          proxy: {
            port,
            cut: Effect.sync(() => {
              up = false
              for (const s of sockets) s.destroy()
              sockets.clear()
            }),
            restore: Effect.sync(() => {
              up = true
            })
          },
          close: () => {
            for (const s of sockets) s.destroy()
            server.close()
          }
        }))
      })
    }),
    ({ close }) => Effect.sync(close)
  ).pipe(Effect.map(({ proxy }) => proxy))
