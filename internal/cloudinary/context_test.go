package cloudinary

import "testing"

func TestContextHasKey(t *testing.T) {
	for _, tc := range []struct {
		context string
		want    bool
	}{
		{"uploaded_by=x", true},
		{"alt=a|uploaded_by=x", true},
		{"uploaded_by", true}, // a key without a value
		{"alt=uploaded_by", false},
		{`alt=a\|uploaded_by=x`, false}, // escaped: part of alt's value
		{`uploaded\_by=x`, true},        // an escaped ordinary character is itself
		{`uploaded\=by=x`, false},
		{"uploaded_by_me=x", false},
		{"", false},
	} {
		if got := ContextHasKey(tc.context, "uploaded_by"); got != tc.want {
			t.Errorf("ContextHasKey(%q) = %v, want %v", tc.context, got, tc.want)
		}
	}
}

func TestAddContext(t *testing.T) {
	if got := AddContext("", "uploaded_by", `a|b=c\d`); got != `uploaded_by=a\|b\=c\\d` {
		t.Errorf("AddContext = %q", got)
	}
	if got := AddContext("alt=x", "uploaded_by", "u"); got != "alt=x|uploaded_by=u" {
		t.Errorf("AddContext = %q", got)
	}
	if !ContextHasKey(AddContext("alt=x", "uploaded_by", "u|v"), "uploaded_by") {
		t.Error("AddContext's pair is not found")
	}
}
