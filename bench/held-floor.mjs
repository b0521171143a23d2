// The floor for the held-requests scenario: a bare node:http server that keeps every request
// unanswered (GET /count answers how many it holds). What 10,000 held requests cost Node itself,
// measured in the same run as the gateway.
import http from 'node:http'

const port = Number(process.argv[2] ?? 18800)
const held = []
http
  .createServer((req, res) => {
    if (req.url === '/count') return res.end(String(held.length))
    held.push(res)
  })
  .listen(port, '127.0.0.1')
