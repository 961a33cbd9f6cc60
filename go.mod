module cloudinary-upload-api

// +heroku goVersion go1.26
go 1.26

require (
	github.com/chromedp/chromedp v0.23.0
	github.com/cloudinary/cloudinary-go/v2 v2.16.1
	github.com/gabriel-vasile/mimetype v1.4.16
	github.com/joho/godotenv v1.5.1
	github.com/rs/cors v1.11.1
	go.uber.org/goleak v1.3.0
)

require (
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/creasty/defaults v1.7.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/google/uuid v1.5.0 // indirect
	github.com/gorilla/schema v1.4.1 // indirect
)
