package imageguard

// checkedTypes are the MIME types, as github.com/gabriel-vasile/mimetype names them, of the
// formats whose size Guard reads (and whose frames it counts). A format added to Guard's
// dispatch is added here; the server admits an image type under "image/*" only if it is here.
var checkedTypes = map[string]bool{
	"image/jpeg":                true,
	"image/png":                 true,
	"image/apng":                true,
	"image/vnd.mozilla.apng":    true,
	"image/gif":                 true,
	"image/webp":                true,
	"image/bmp":                 true,
	"image/tiff":                true,
	"image/vnd.adobe.photoshop": true,
	"image/x-icon":              true,
	// HEIC, HEIF and AVIF (ISOBMFF), walked in their own file. The server also refuses a
	// file of a type listed here when Guard gives it no Format, so a sequence, or a brand the
	// walk does not take, is refused rather than stored unmeasured.
	"image/heic":          true,
	"image/heic-sequence": true,
	"image/heif":          true,
	"image/heif-sequence": true,
	"image/avif":          true,
}

// keepsMetadata are the checked types whose metadata Guard passes on unchanged in every mode:
// a TIFF's GPS IFD (a DNG's too), a PSD's EXIF and XMP in its image resources.
var keepsMetadata = map[string]bool{
	"image/tiff":                true,
	"image/vnd.adobe.photoshop": true,
}

// KeepsLocation says whether a file of this type keeps its metadata, a GPS position included,
// through Guard whatever the Mode.
func KeepsLocation(mimeType string) bool { return keepsMetadata[mimeType] }

// Checks says whether Guard reads the size of files of this MIME type (without parameters,
// in lower case, mimetype's canonical name). A file of another type goes through Guard
// unmeasured.
func Checks(mimeType string) bool { return checkedTypes[mimeType] }
