#!/bin/sh
# rename.sh: after merging the `config` branch, rewrites code that still reads the root config's
# old fields. The variables' fields now come from internal/config's Config, embedded in the root
# config (cfg.port -> cfg.Port...): every rename only capitalises the first letter. Run in the
# repository root on the merged tree, then go build ./... Two passes, neither touches comments
# or layout (gofmt -r would drop a trailing comment on a rewritten line):
#  1. sed: cfg.old -> cfg.New wherever an identifier cfg (also x.cfg) is followed by an old name;
#  2. the compiler: every remaining "X.old undefined (type config has no field or method old, but
#     does have field New)" is rewritten at the very line and column it names.
# A variable another branch added to the old envVars table (tus: RESUMABLE_EXPIRY) must first
# become a row and a field in internal/config/vars.go; its rename is listed below already.
set -eu
cd "$(dirname "$0")"
files=$(git ls-files '*.go' | grep -v '^internal/' | grep -v '^tools/')
for pair in \
	port:Port cloudinary:Cloudinary allowedOrigins:AllowedOrigins maxUploadBytes:MaxUploadBytes \
	allowedTypes:AllowedTypes uploadFolder:UploadFolder uploadPreset:UploadPreset \
	uploadTimeout:UploadTimeout shutdownTimeout:ShutdownTimeout chunkSize:ChunkSize \
	maxConcurrent:MaxConcurrent uploadMemory:UploadMemory uploadMemorySet:UploadMemorySet \
	admissionWait:AdmissionWait maxPerClient:MaxPerClient clientMemoryShare:ClientMemoryShare \
	maxConnections:MaxConnections minRate:MinRate bodyIdleTimeout:BodyIdleTimeout \
	retryBackoff:RetryBackoff logFormat:LogFormat logLevel:LogLevel storage:Storage \
	uploadDir:UploadDir publicURL:PublicURL demoPage:DemoPage metrics:Metrics \
	metricsToken:MetricsToken rateLimit:RateLimit userQuota:UserQuota redisURL:RedisURL \
	redisTLSVerify:RedisTLSVerify redisTimeout:RedisTimeout maxFilesPerRequest:MaxFilesPerRequest \
	fileFields:FileFields readHeaderTimeout:ReadHeaderTimeout image:Image \
	resumableExpiry:ResumableExpiry; do
	old=${pair%%:*} new=${pair#*:}
	# shellcheck disable=SC2086
	sed -i "s/\\bcfg\\.$old\\b/cfg.$new/g" $files
done
# Then what sed could not see (another variable name, e.g. a test's c.chunkSize): the compiler
# names each remaining old field of type config, where it is, and the new name; the loop rewrites
# exactly there, until the root package and its tests compile or nothing is left.
i=0
while [ $i -lt 30 ]; do
	i=$((i + 1))
	fixes=$(go test -count=1 -run '^$' -gcflags=-e . 2>&1 |
		sed -n 's/^\(\.\/[^:]*\.go\):\([0-9]*\):\([0-9]*\): .*undefined (type \*\{0,1\}config has no field or method \([A-Za-z0-9_]*\), but does have field \([A-Za-z0-9_]*\))$/\1 \2 \3 \4 \5/p') || true
	[ -n "$fixes" ] || break
	echo "$fixes" | while read -r file line col old new; do
		sed -i "${line}s/^\(.\{$((col - 1))\}\)$old/\1$new/" "$file"
	done
done
# Removed helpers, for the compiler to point at: parseBytes is internal/config's ParseSize,
# envVars() is internal/config's Vars() (fields Name, Default, Help, Secret), defaultUploadMemory
# is config.DefaultUploadMemory, parseClientMemory is config.ClientMemory, parseMinRate and
# validTypePattern are internal/config's.
git grep -n 'parseClientMemory(\|parseBytes(\|envVars()\|defaultUploadMemory\|validTypePattern\|parseMinRate' -- '*.go' ':!internal' ':!tools' || true
