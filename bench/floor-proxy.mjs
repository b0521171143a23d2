// Floors for the fixed-rate scenario: the least a node:http proxy can do per request, with two
// upstream clients. `undici`: undici's Pool.dispatch with a minimal handler (what the gateway used
// before its own HTTP/1.1 client). `socket`: a bare keep-alive socket per request in flight that
// understands only Content-Length responses — not a usable client, only the cost of Node's
// server side plus one write and one read upstream. The gateway's own client sits between them.
// `net`: the same bare socket client behind a bare `net` server that finds the end of each request
// head itself and writes the response head as one string — no node:http at all, so the least any
// proxy written on Node's sockets could cost. Not a usable server either (no bodies, no framing
// checks).
import http from 'node:http'
import net from 'node:net'
import { Pool } from 'undici'

const [port, backendPort] = process.argv.slice(2, 4).map(Number)
const kind = process.argv[4]

function undiciProxy() {
  const pool = new Pool(`http://127.0.0.1:${backendPort}`, { connections: null, pipelining: 1 })
  class Handler {
    constructor(res) {
      this.res = res
    }
    onRequestStart() {}
    onResponseStart(_c, status, headers) {
      this.res.writeHead(status, headers)
    }
    onResponseData(_c, chunk) {
      this.res.write(chunk)
    }
    onResponseEnd() {
      this.res.end()
    }
    onResponseError() {
      this.res.destroy()
    }
  }
  return (req, res) => pool.dispatch({ method: req.method, path: req.url, headers: req.headers, body: null }, new Handler(res))
}

function socketProxy() {
  const idle = []
  const open = () => {
    const s = net.connect({ port: backendPort, host: '127.0.0.1', noDelay: true })
    s.res = null
    s.text = ''
    s.on('error', () => {})
    s.on('close', () => {
      const i = idle.indexOf(s)
      if (i >= 0) idle.splice(i, 1)
      s.res?.destroy()
    })
    s.on('data', (d) => {
      s.text += d.toString('latin1')
      const end = s.text.indexOf('\r\n\r\n')
      if (end < 0) return
      const m = /content-length: *(\d+)/i.exec(s.text.slice(0, end))
      const length = m ? Number(m[1]) : 0
      if (s.text.length < end + 4 + length) return
      const body = s.text.slice(end + 4, end + 4 + length)
      const res = s.res
      s.text = ''
      s.res = null
      idle.push(s)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': length })
      res.end(body, 'latin1')
    })
    return s
  }
  return (req, res) => {
    const s = idle.pop() ?? open()
    s.res = res
    s.write(`${req.method} ${req.url} HTTP/1.1\r\nhost: ${req.headers.host}\r\n\r\n`)
  }
}

/** Adapts a raw client socket to the two calls socketProxy's handler makes on a ServerResponse. */
function rawResponse(client) {
  let status = 200
  let headers = {}
  return {
    writeHead(s, h) {
      status = s
      headers = h
    },
    end(body, encoding) {
      let head = `HTTP/1.1 ${status} OK\r\n`
      for (const k in headers) head += `${k}: ${headers[k]}\r\n`
      client.write(head + '\r\n' + body, encoding)
    },
    destroy() {
      client.destroy()
    },
  }
}

function netServer(handle) {
  return net.createServer({ noDelay: true }, (client) => {
    let text = ''
    client.on('error', () => {})
    client.on('data', (d) => {
      text += d.toString('latin1')
      let end
      while ((end = text.indexOf('\r\n\r\n')) >= 0) {
        const head = text.slice(0, end)
        text = text.slice(end + 4)
        const [method, url] = head.slice(0, head.indexOf('\r\n')).split(' ')
        const host = /\r\nhost: *([^\r]*)/i.exec(head)?.[1] ?? ''
        handle({ method, url, headers: { host } }, rawResponse(client))
      }
    })
  })
}

const server = kind === 'net' ? netServer(socketProxy()) : http.createServer({ noDelay: true }, kind === 'socket' ? socketProxy() : undiciProxy())
server.listen(port, '127.0.0.1')
