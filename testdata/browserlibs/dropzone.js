// Dropzone 6: npm install dropzone. In the page: <div id="uploader" class="dropzone"></div>
// and dropzone/dist/dropzone.css.
import Dropzone from 'dropzone'

new Dropzone('#uploader', {
  url: 'https://your-app.herokuapp.com/upload',
  init() {
    // Dropzone shows the answer's "error" as text: ours is an object, so show its message
    // (instead of "[object Object]").
    this.on('error', (file, answer) => {
      const message = answer?.error?.message ?? answer
      for (const el of file.previewElement?.querySelectorAll('[data-dz-errormessage]') ?? []) {
        el.textContent = message
      }
    })
  },
})
