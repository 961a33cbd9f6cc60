package main

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/joho/godotenv"

	envconfig "cloudinary-upload-api/internal/config"
)

// secret is a string that never prints itself (internal/cloudinary's, which holds the API secret).
type secret = envconfig.Secret

// config is read once at start-up; a bad value stops the server. internal/config reads every
// variable from its one table (cfg.Port, cfg.MaxUploadBytes…); the fields below are what the
// server builds from the variables whose values are its own types, in checks that Load runs
// with its own, so that every bad value is reported at once.
//
// Adding a variable: a row (and a field) in internal/config/vars.go, then go generate ./...
// (docs/configuration.md, .env.example, app.json) and go test -run TestHelp -update .
//
//go:generate go run ./tools/gendocs -root .
type config struct {
	envconfig.Config

	uploadTokens       *tokenSet // UPLOAD_TOKENS; nil: anyone may upload
	signIn             signInConfig
	trustProxy         proxyTrust
	signableParams     []string
	maxMemoryPerClient int64 // 0: no per-client share of UploadMemory
}

// loadConfig reads every variable through getenv and reports all bad values at once.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
	c, err := envconfig.Load(getenv, cfg.checks()...)
	cfg.Config = c
	return cfg, err
}

// checks are the rules of the variables that need the server's own types and limits.
func (cfg *config) checks() []envconfig.Check {
	// reservation is what one upload of the largest kind holds, which the budgets must fit: of
	// the configuration as read so far (the checks before this one have filled cfg's own fields).
	reservation := func(c *envconfig.Config) int64 {
		sofar := *cfg
		sofar.Config = *c
		return sofar.uploadReservation(true)
	}
	return []envconfig.Check{
		{Vars: []string{"UPLOAD_TOKENS"}, Check: func(c *envconfig.Config) (err error) {
			cfg.uploadTokens, err = parseTokens(string(c.UploadTokensSetting)) // names the variable, never a token
			return err
		}},
		{Vars: []string{"AUTH_JWKS_URL", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWT_SECRET", "AUTH_COOKIE"}, Check: func(c *envconfig.Config) (err error) {
			cfg.signIn, err = loadSignIn(c.Auth)
			return err
		}},
		{Vars: []string{"UPLOAD_FOLDER", "AUTH_JWKS_URL", "AUTH_JWT_SECRET"}, Check: func(c *envconfig.Config) error {
			if err := validateFolder(c.UploadFolder, cfg.signIn.on()); err != nil {
				return err
			}
			if cfg.signIn.on() {
				c.UploadFolder = userFolderTemplate(c.UploadFolder)
			}
			return nil
		}},
		{Vars: []string{"TRUST_PROXY"}, Check: func(c *envconfig.Config) (err error) {
			cfg.trustProxy, err = parseProxyTrust(c.TrustProxySetting)
			return err
		}},
		{Vars: []string{"SIGNABLE_PARAMS"}, Check: func(c *envconfig.Config) (err error) {
			cfg.signableParams, err = parseSignableParams(c.SignableParamsSetting)
			return err
		}},
		{Vars: []string{"FILE_FIELDS", "SIGNABLE_PARAMS"}, Check: func(c *envconfig.Config) error {
			var problems []error
			for _, f := range c.FileFields {
				if slices.Contains(cfg.signableParams, f) {
					problems = append(problems, envconfig.FileFieldError(f))
				}
			}
			return errors.Join(problems...)
		}},
		{Vars: []string{"UPLOAD_MEMORY", "CHUNK_SIZE", "STORAGE"}, Check: func(c *envconfig.Config) error {
			// One upload of the largest kind must fit, or it would wait for nothing.
			if need := reservation(c); c.UploadMemorySet && c.Storage == "cloudinary" && c.UploadMemory < need {
				return envconfig.Bad("UPLOAD_MEMORY", fmt.Sprintf("at least %d bytes: one chunked upload holds CHUNK_SIZE plus its buffers", need))
			}
			return nil
		}},
		{Vars: []string{"MAX_MEMORY_PER_CLIENT", "CHUNK_SIZE", "STORAGE"}, Check: func(c *envconfig.Config) (err error) {
			// run() works it out again once it knows UPLOAD_MEMORY when unset.
			if cfg.maxMemoryPerClient, err = envconfig.ClientMemory(c.ClientMemoryShare, c.UploadMemory, reservation(c)); err != nil {
				return envconfig.Bad("MAX_MEMORY_PER_CLIENT", err.Error())
			}
			return nil
		}},
		{Vars: []string{"METRICS_TOKEN"}, Check: func(c *envconfig.Config) error {
			if c.MetricsToken != "" && !strongToken(string(c.MetricsToken)) {
				return errors.New("METRICS_TOKEN " + tokenRule) // never the token itself
			}
			return nil
		}},
	}
}

// splitList splits a comma-separated value, dropping blanks, as the variables' lists are split.
func splitList(s string) []string { return envconfig.SplitList(s) }

// withDotEnv returns a getenv that falls back to the values in the file at path.
func withDotEnv(getenv func(string) string, path string) (func(string) string, error) {
	fromFile, err := godotenv.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return getenv, nil
	}
	if err != nil { // not wrapped: godotenv's message quotes the file, secrets included
		return nil, fmt.Errorf("ENV_FILE %s is malformed: check quoting and variable names", path)
	}
	return func(key string) string {
		if v := getenv(key); v != "" {
			return v // the real environment wins
		}
		return fromFile[key]
	}, nil
}
