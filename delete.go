package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"cloudinary-upload-api/internal/auth"
)

// DELETE /upload is undo: it deletes a file that an upload stored.
//
// The body is the upload's own answer, as FilePond sends it on revert on its defaults (its
// serverId is the upload's response text, sent back as a text/plain body), or any JSON object
// with public_id (and resource_type, default image) or delete_token. Whatever its Content-Type,
// the body is read as JSON.
//
// Who may delete:
//   - a signed-in user (auth.FromContext): a public_id inside their own folder
//     (auth.Folder(UPLOAD_FOLDER, user)), at any time, through the store's Destroy (Cloudinary's
//     signed destroy);
//   - anyone else: whoever holds the answer's delete_token, for store.DeleteTokenTTL (10
//     minutes) after the upload, through the store's DeleteByToken (Cloudinary's delete_by_token;
//     the local store checks its own). An upload without a signed-in user asks for one.
//
// Anyone else gets 403, a file that is not there 404; the answer is Cloudinary's {"result":"ok"}.

// deleter deletes stored files: internal/cloudinary's Client or internal/localstore's Store.
type deleter interface {
	Destroy(ctx context.Context, publicID, resourceType string) error
	DeleteByToken(ctx context.Context, token string) error
}

const (
	maxDeleteBody     = 64 << 10 // an upload's answer with 50 long tags and a context fits
	maxDeletePublicID = 1024     // a public id with UPLOAD_FOLDER (and a user's folder) in front
	maxDeleteToken    = 512      // Cloudinary's and the local store's are 64 hex digits
)

// deleteRequest is what DELETE /upload reads of its body: the fields of an upload's answer that
// say what to delete and what allows it.
type deleteRequest struct {
	PublicID     string `json:"public_id"`
	ResourceType string `json:"resource_type"`
	DeleteToken  string `json:"delete_token"`
}

// handleDelete serves DELETE /upload. folderTemplate is UPLOAD_FOLDER, whose {sub} makes each
// signed-in user's folder; timeout bounds the store's answer (UPLOAD_TIMEOUT).
func handleDelete(d deleter, folderTemplate string, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := readDeleteRequest(w, r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		ctx, cancel := context.WithTimeoutCause(r.Context(), timeout, errUpstreamTimeout)
		defer cancel()
		if u, signedIn := auth.FromContext(r.Context()); signedIn {
			err = destroyOwn(ctx, d, req, folderTemplate, u)
		} else if req.DeleteToken == "" {
			err = errDeleteToken
		} else {
			err = d.DeleteByToken(ctx, req.DeleteToken)
		}
		switch {
		case err == nil:
			if err := encode(w, http.StatusOK, map[string]string{"result": "ok"}); err != nil {
				loggerFrom(r.Context()).WarnContext(r.Context(), "write delete result", "err", err)
			}
			return
		case errors.Is(context.Cause(ctx), errUpstreamTimeout):
			err = fmt.Errorf("%w: %w", errUpstreamTimeout, err)
		case r.Context().Err() != nil:
			err = fmt.Errorf("%w: %w", errClientGone, err)
		}
		writeError(w, r, deleteError(err))
	})
}

// destroyOwn deletes req's public_id if it lies inside u's own folder. A folder template without
// {sub} is every user's folder at once, so nothing in it is any one user's to delete.
func destroyOwn(ctx context.Context, d deleter, req deleteRequest, folderTemplate string, u auth.User) error {
	if req.PublicID == "" {
		return errDeleteBadBody
	}
	folder := auth.Folder(folderTemplate, u)
	if !strings.Contains(folderTemplate, auth.SubjectPlaceholder) || !strings.HasPrefix(req.PublicID, folder+"/") {
		return errDeleteNotYours
	}
	return d.Destroy(ctx, req.PublicID, req.ResourceType)
}

// readDeleteRequest reads and checks the body of DELETE /upload.
func readDeleteRequest(w http.ResponseWriter, r *http.Request) (deleteRequest, error) {
	var req deleteRequest
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeleteBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return req, errDeleteTooLarge
	}
	if err != nil {
		return req, fmt.Errorf("%w: %w", errDeleteBadBody, err)
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return req, fmt.Errorf("%w: %w", errDeleteBadBody, err)
	}
	switch req.ResourceType {
	case "":
		req.ResourceType = "image" // Cloudinary's default
	case "image", "video", "raw":
	default:
		return req, errDeleteBadBody
	}
	if req.PublicID != "" && !deletablePublicID(req.PublicID) {
		return req, errDeleteBadBody
	}
	if len(req.DeleteToken) > maxDeleteToken || !printable(req.DeleteToken) {
		return req, errDeleteBadBody
	}
	return req, nil
}

// deletablePublicID accepts a public id as an upload answers it (UPLOAD_FOLDER included): printable,
// with no empty, "." or ".." part, so that no spelling of it reaches outside the folder it names,
// and no '&', which no upload could have signed (cloudinary.Signer.Sign).
func deletablePublicID(id string) bool {
	if len(id) > maxDeletePublicID || !printable(id) || strings.Contains(id, "&") {
		return false
	}
	for _, seg := range strings.Split(id, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}
