// A tiny revision for the local runner: says which revision answered, echoes WebSocket messages,
// and answers the activator's queue-proxy readiness probe the way queue-proxy does.
import http from 'node:http'
import { WebSocketServer } from 'ws'

const port = Number(process.env.PORT || 8080)
const revision = process.env.K_REVISION || 'hello'
const greeting = process.env.GREETING || 'Hello'

const server = http.createServer((req, res) => {
  if (req.url === '/healthz' && req.headers['k-network-probe'] === 'queue') {
    res.end('queue')
    return
  }
  const host = req.headers['k-original-host'] || req.headers.host
  res.setHeader('content-type', 'text/plain; charset=utf-8')
  res.setHeader('x-revision', revision)
  res.end(`${greeting} from ${revision}! You asked for http://${host}${req.url}\n`)
})

const wss = new WebSocketServer({ noServer: true })
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `${revision}: ${data}`))
  })
})

server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => server.close(() => process.exit(0)))
