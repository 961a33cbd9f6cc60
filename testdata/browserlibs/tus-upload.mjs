// tus-upload.mjs uploads one file with tus-js-client from Node, as a script or a server would,
// for resumable_node_test.go. Its one argument is JSON: file (a path), endpoint, uploadUrl (to
// resume an upload begun elsewhere), chunkSize ("Infinity" or bytes), retryDelays, headers. It
// prints one JSON line: {url, status, body, ms (from start to onSuccess)} on success, {error, url} on failure (exit 1).
import { readFileSync } from 'node:fs'
import { Upload } from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const file = readFileSync(opts.file)
const started = performance.now()
const upload = new Upload(file, {
  endpoint: opts.endpoint,
  uploadUrl: opts.uploadUrl || null,
  chunkSize: opts.chunkSize === 'Infinity' ? Infinity : Number(opts.chunkSize),
  retryDelays: opts.retryDelays,
  headers: opts.headers || {},
  metadata: { filename: opts.filename || 'file.bin', filetype: 'application/octet-stream' },
  storeFingerprintForResuming: false,
  onError (err) {
    console.log(JSON.stringify({ error: String(err), url: upload.url }))
    process.exit(1)
  },
  onSuccess (payload) {
    const res = payload.lastResponse
    console.log(JSON.stringify({ url: upload.url, status: res.getStatus(), body: res.getBody(), ms: performance.now() - started }))
  }
})
upload.start()
