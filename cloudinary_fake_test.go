package main

import (
	"testing"

	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
)

// The root's tests upload to internal/cloudinary/cloudinarytest's fake, under these names.
type (
	fakeCloudinary = cloudinarytest.Server
	fakeBehaviour  = cloudinarytest.Behaviour
)

// The fake's account.
const (
	fakeCloudName = cloudinarytest.CloudName
	fakeAPIKey    = cloudinarytest.APIKey
	fakeAPISecret = cloudinarytest.APISecret
)

// newFakeCloudinary starts the fake and closes it when the test ends.
func newFakeCloudinary(t testing.TB) *fakeCloudinary { return cloudinarytest.New(t) }
