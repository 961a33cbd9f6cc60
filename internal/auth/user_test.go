package auth

import (
	"context"
	"regexp"
	"testing"
)

func TestFolderName(t *testing.T) {
	for sub, want := range map[string]string{
		"auth0|abc":             "auth0_7Cabc",
		"user_2abc":             "user_5F2abc",
		"a/b":                   "a_2Fb",
		"..":                    "_2E_2E",
		"Zx-9":                  "Zx-9",
		"google-oauth2|1234567": "google-oauth2_7C1234567",
		"é":                     "_C3_A9",
	} {
		if got := FolderName(sub); got != want {
			t.Errorf("FolderName(%q) = %q, want %q", sub, got, want)
		}
	}
}

// FuzzFolderName: two different subjects never share a folder, and a name is always safe.
func FuzzFolderName(f *testing.F) {
	f.Add("auth0|abc", "auth0_7Cabc")
	f.Add("a_", "a_5F")
	f.Add("", "x")
	safe := regexp.MustCompile(`^[A-Za-z0-9_-]*$`)
	f.Fuzz(func(t *testing.T, a, b string) {
		fa, fb := FolderName(a), FolderName(b)
		if !safe.MatchString(fa) {
			t.Fatalf("FolderName(%q) = %q has a character outside [A-Za-z0-9_-]", a, fa)
		}
		if a != b && fa == fb {
			t.Fatalf("FolderName(%q) == FolderName(%q) == %q", a, b, fa)
		}
	})
}

func TestUserContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("a bare context has a user")
	}
	u, ok := FromContext(NewContext(context.Background(), User{Subject: "auth0|abc"}))
	if !ok || u.Subject != "auth0|abc" {
		t.Fatalf("FromContext = %+v, %v", u, ok)
	}
}

func TestFolder(t *testing.T) {
	u := User{Subject: "auth0|abc"}
	if got := Folder("users/{sub}", u); got != "users/auth0_7Cabc" {
		t.Errorf("Folder = %q", got)
	}
	if got := Folder("app/{sub}/photos", u); got != "app/auth0_7Cabc/photos" {
		t.Errorf("Folder = %q", got)
	}
}
