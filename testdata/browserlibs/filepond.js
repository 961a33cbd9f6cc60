// FilePond 4: npm install filepond. In the page: <input type="file"> and filepond/dist/filepond.min.css.
// The file goes in the form field "filepond" (FilePond's default), after a text part of its metadata.
import * as FilePond from 'filepond'

FilePond.create(document.querySelector('input[type="file"]'), {
  server: {
    url: 'https://your-app.herokuapp.com/upload',
    // Show the server's message instead of "Error during upload".
    process: { onerror: (body) => JSON.parse(body).error.message },
  },
  labelFileProcessingError: (error) => error.body,
})
