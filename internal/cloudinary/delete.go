package cloudinary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
)

// Destroy deletes the asset publicID of the resource type (image, video or raw) with the Upload
// API's signed destroy, as the SDK's Destroy sends it, with invalidate=true so that the CDN's
// copies go too. No such asset is ErrNotFound.
func (c *Client) Destroy(ctx context.Context, publicID, resourceType string) error {
	fields := url.Values{"public_id": {publicID}, "type": {"upload"}, "invalidate": {"true"}}
	sig, err := c.signer.Sign(fields, time.Now())
	if err != nil {
		return err
	}
	fields.Set("signature", sig)
	fields.Set("api_key", c.signer.APIKey())
	return c.deleteRequest(ctx, c.signer.ActionURL(resourceType, "destroy"), fields, false)
}

// DeleteByToken deletes the asset whose upload answered token as its delete_token (asked for
// with store.Params.DeleteToken), with the unsigned delete_by_token: Cloudinary takes a token for
// 10 minutes after its upload. A token Cloudinary refuses (expired, unknown) is ErrTokenRefused;
// a token whose asset is gone is ErrNotFound.
func (c *Client) DeleteByToken(ctx context.Context, token string) error {
	return c.deleteRequest(ctx, c.signer.DeleteByTokenURL(), url.Values{"token": {token}}, true)
}

// deleteRequest posts a deletion's fields, form-urlencoded, and reads Cloudinary's result.
func (c *Client) deleteRequest(ctx context.Context, target string, fields url.Values, byToken bool) error {
	if c.uploadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.uploadTimeout, ErrUploadTimer)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(fields.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", api.GetUserAgent())
	resp, err := c.http.Do(req)
	if err != nil {
		return timedOut(ctx, noAnswer(err))
	}
	defer resp.Body.Close()
	raw, err := readAnswer(resp)
	if err != nil {
		var rejected *RejectedError
		if byToken && (errors.Is(err, ErrCredentials) || errors.As(err, &rejected)) {
			// delete_by_token carries no credentials: any refusal but the rate's is the token's.
			return fmt.Errorf("%w: %w", ErrTokenRefused, err)
		}
		return timedOut(ctx, err)
	}
	var answer struct {
		Result string `json:"result"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return fmt.Errorf("%w: %w", ErrNotJSON, err)
	}
	switch answer.Result {
	case "ok":
		return nil
	case "not found":
		return ErrNotFound
	}
	return fmt.Errorf("%w: a deletion answered result %q", ErrFailed, answer.Result)
}
