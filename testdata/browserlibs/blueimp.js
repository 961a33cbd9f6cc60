// blueimp jQuery File Upload 10 (npm install blueimp-file-upload jquery@3.7: it breaks on jQuery 4).
// In the page: jquery/dist/jquery.min.js, blueimp-file-upload/js/vendor/jquery.ui.widget.js,
// blueimp-file-upload/js/jquery.fileupload.js, then
// <input id="fileupload" type="file" name="files[]" multiple> and <ul id="uploads"></ul>.
$('#fileupload').fileupload({
  url: 'https://your-app.herokuapp.com/upload',
  dataType: 'json',
  done(e, data) {
    $('<li class="done">').text(`${data.files[0].name}: ${data.result.secure_url}`).appendTo('#uploads')
  },
  fail(e, data) {
    const message = data.jqXHR.responseJSON?.error?.message ?? data.errorThrown
    $('<li class="failed">').text(`${data.files[0].name}: ${message}`).appendTo('#uploads')
  },
})
