package main

import (
	"net/http"
	"net/url"
	"slices"

	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

// handlePut serves PUT /upload/{filename}: the request's body is the file itself (what
// `curl -T photo.jpg http://host/upload/` sends, and an iOS background upload task or a
// presigned-PUT client), and the parameters a client may set (SIGNABLE_PARAMS) come in the
// query string, checked as the form's fields are. It is answered as a form with one file is:
// the same limits, image guard, errors, metrics, USER_QUOTA and admission (admitUpload).
func handlePut(up uploader, lim uploadLimits, adm *uploadAdmission, quota *uploadQuota) http.Handler {
	pl := upload.New(lim.rules(), up)
	return admitUpload(adm, quota, func(w http.ResponseWriter, r *http.Request, mem store.Memory) (int, []byte, error) {
		return servePut(w, r, pl, lim, mem)
	})
}

// servePut stores the request's body as one file.
func servePut(w http.ResponseWriter, r *http.Request, pl *upload.Pipeline, lim uploadLimits, mem store.Memory) (int, []byte, error) {
	if r.ContentLength > lim.maxFileBytes {
		return 0, nil, errTooLarge(lim.maxFileBytes) // answered before reading a byte
	}
	fields, err := queryParams(r.URL.RawQuery, lim)
	if err != nil {
		return 0, nil, err
	}
	p := fields.p
	p.Filename = cleanFilename(r.PathValue("filename"))
	p.BaseURL = requestBaseURL(r)
	p.Size = max(r.ContentLength, -1) // −1: unknown
	p.Memory = mem
	p.Folder, p.UploadedBy = folderFor(r, lim.folder, lim.signIn)
	// Without a signed-in user, holding the answer is what lets its file be deleted (delete.go).
	p.DeleteToken = p.UploadedBy == ""

	body := watchedBody(r)
	body.Idle(lim.idleTimeout)
	quotaFile := quotaSpendOf(r).file()
	defer quotaFile.end() // the file's bytes go back to the quota unless it was stored
	ctx, cancel := uploadContext(r, body)
	defer cancel(nil)
	res, err := pl.Upload(ctx, upload.File{Body: body, Size: p.Size, Params: p, Spend: quotaFile.take, Waker: body})
	if err != nil {
		return 0, nil, uploadError(ctx, err, lim)
	}
	quotaFile.keep()
	setMetadataRemoved(w, []fileSlot{{result: res.Answer, removed: res.Removed}})
	return http.StatusOK, res.Answer, nil
}

// queryParams reads the parameters of SIGNABLE_PARAMS from a query string, each at most once and
// checked as the form's fields are; other parameters are ignored, as the form's other fields are.
func queryParams(rawQuery string, lim uploadLimits) (formFields, error) {
	fields := formFields{seen: map[string]bool{}}
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fields, errBadField("the query string is malformed: %v", err)
	}
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		values := query[name]
		switch {
		case !slices.Contains(lim.signable, name):
			fields.ignore(name)
			continue
		case len(values) > 1:
			return fields, errBadField("query parameter %q appears twice", name)
		case len(values[0]) > maxFieldBytes:
			return fields, errBadField("query parameter %q is longer than %d bytes", name, maxFieldBytes)
		}
		if err := fields.set(name, values[0]); err != nil {
			return fields, err
		}
	}
	return fields, nil
}
