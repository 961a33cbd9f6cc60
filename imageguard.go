package main

import (
	"net/http"
	"strings"
)

// metadataRemovedHeader tells the client which metadata policy its file went through.
const metadataRemovedHeader = "X-Metadata-Removed"

// setMetadataRemoved says, in X-Metadata-Removed, what the guard removed from each file part:
// one value for one file, a comma-separated list in the order of the parts for several ("none"
// for a file that was not stored). Nothing is said when no file was stored.
func setMetadataRemoved(w http.ResponseWriter, slots []fileSlot) {
	values := make([]string, len(slots))
	stored := false
	for i, s := range slots {
		values[i] = "none"
		if s.err == nil && s.removed != "" {
			values[i], stored = s.removed, true
		}
	}
	if stored {
		w.Header().Set(metadataRemovedHeader, strings.Join(values, ", "))
	}
}
