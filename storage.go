package main

import (
	"fmt"
	"log/slog"
)

// openStore builds the store that STORAGE chose and says which in one start-up line.
// The returned func releases it at shutdown.
func openStore(cfg config, logger *slog.Logger) (uploader, func() error, error) {
	if cfg.storage == "cloudinary" {
		up, err := newCloudinaryUploader(cfg.cloudinary, cfg.cloudinaryOptions())
		if err != nil {
			return nil, nil, fmt.Errorf("CLOUDINARY_URL: %w", err)
		}
		logger.Info("storing uploads in Cloudinary", "store", "cloudinary", "cloud_name", cfg.cloudinary.CloudName, "folder", cfg.uploadFolder)
		return up, func() error { return nil }, nil
	}
	s, err := newLocalStore(cfg.uploadDir, cfg.uploadFolder, cfg.publicURL)
	if err != nil {
		return nil, nil, err
	}
	why := "STORAGE=local"
	if cfg.cloudinary == nil {
		why = "no Cloudinary credentials are set"
	}
	logger.Info("storing uploads on local disk, served at /files/ ("+why+")", "store", "local", "dir", s.dir)
	return s, s.Close, nil
}
