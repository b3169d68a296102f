GO ?= go
ADDR ?= 127.0.0.1:8080
# The race detector needs cgo and a C compiler; a machine with only Go still runs the suite.
RACE ?= $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

.PHONY: run test generate check-generate build bench bench-faults vet

## run: serve on an embedded SQLite database (./data/tilegate.db)
run:
	$(GO) run ./cmd/tilegate serve --addr $(ADDR)

## test: the whole suite, on PostgreSQL (TEST_DATABASE_URL) and SQLite
test:
	$(GO) vet ./...
	$(GO) test $(RACE) -count=1 ./...

## generate: regenerate gen/ from openapi.yaml
generate:
	$(GO) run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config gen/config.yaml openapi.yaml

## check-generate: fail when gen/ is not what openapi.yaml generates
check-generate:
	@tmp=$$(mktemp -d) && \
	sed "s#^output: .*#output: $$tmp/tilegate.gen.go#" gen/config.yaml > $$tmp/config.yaml && \
	$(GO) run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config $$tmp/config.yaml openapi.yaml && \
	if ! cmp -s $$tmp/tilegate.gen.go gen/tilegate.gen.go; then \
		echo "gen/ is stale: run 'make generate' and commit the result"; diff -u gen/tilegate.gen.go $$tmp/tilegate.gen.go | head -40; rm -rf $$tmp; exit 1; \
	fi; rm -rf $$tmp; echo "gen/ is up to date"

build:
	$(GO) build -o bin/tilegate ./cmd/tilegate

## bench: benchmarks and loopback load comparisons (not part of make test; needs PostgreSQL)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./tiletoken/ ./origin/ ./mbtiles/ ./server/
	$(GO) run ./bench/tokens
	$(GO) run ./bench/tiles

## bench-faults: database faults (black hole, cut, restart) under a mixed load, through a TCP proxy (needs PostgreSQL)
bench-faults:
	$(GO) run ./bench/faults
