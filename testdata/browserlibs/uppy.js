// Uppy 6: npm install @uppy/core @uppy/dashboard @uppy/xhr-upload, bundled (Vite, esbuild, …).
// In the page: <div id="uploader"></div> and the styles
// @uppy/core/css/style.min.css and @uppy/dashboard/css/style.min.css.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import XHRUpload from '@uppy/xhr-upload'

new Uppy()
  .use(Dashboard, { inline: true, target: '#uploader' })
  .use(XHRUpload, {
    endpoint: 'https://your-app.herokuapp.com/upload',
    // Show the server's message instead of "This looks like a network error…",
    onAfterResponse(xhr) {
      if (xhr.status >= 400) {
        let message = `upload failed (${xhr.status})`
        try { message = JSON.parse(xhr.responseText).error.message } catch {}
        throw new Error(message)
      }
    },
    // and retry only what may succeed later: Uppy retries every refusal 3 times by default.
    shouldRetry: (xhr) => xhr.status === 0 || xhr.status === 429 || xhr.status >= 500,
  })
