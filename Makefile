GO ?= go
ADDR ?= 127.0.0.1:8080
# The race detector needs cgo and a C compiler; a machine with only Go still runs the suite.
RACE ?= $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

.PHONY: run test generate check-generate build bench vet contract release-contract sdk-test bench-peers bench-faults bench-flood bench-scale bench-storage

## run: serve on an embedded SQLite database (./data/tilegate.db)
run:
	$(GO) run ./cmd/tilegate serve --addr $(ADDR)

## test: the whole suite, on PostgreSQL (TEST_DATABASE_URL) and SQLite; the TypeScript SDK's tests when Node is present
test:
	$(GO) vet ./...
	$(GO) test $(RACE) -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory sdk-test

## sdk-test: build the TypeScript SDK and run its tests (node --test) against a real tilegate serve
sdk-test:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		echo "sdk-test: skipped, Node.js/npm not found (the TypeScript SDK tests need them; CI installs them)"; \
	else \
		$(MAKE) --no-print-directory sdk/typescript/node_modules/.installed && \
		cd sdk/typescript && npm run --silent build && npm test; \
	fi

sdk/typescript/node_modules/.installed: sdk/typescript/package-lock.json
	cd sdk/typescript && npm ci --no-audit --no-fund
	@touch $@

contract/node_modules/.installed: contract/package-lock.json
	cd contract && npm ci --no-audit --no-fund
	@touch $@

## contract: Redocly lint (recommended rules, 0 errors), Spectral lint (spectral:oas, 0 errors),
## oasdiff breaking-change gate against contract/released.yaml, and every operation through
## Stoplight Prism against a real tilegate
contract: contract/node_modules/.installed
	cd contract && npx --no-install redocly lint ../openapi.yaml --config redocly.yaml --format stylish
	cd contract && npx --no-install spectral lint ../openapi.yaml --ruleset .spectral.yaml --fail-severity error
	contract/breaking.sh
	TILEGATE_CONTRACT=1 $(GO) test -count=1 -v -run TestEveryOperationThroughPrism ./contract/prism/

## release-contract: make openapi.yaml the released contract that later changes are checked against
release-contract: contract/node_modules/.installed
	cd contract && npx --no-install redocly lint ../openapi.yaml --config redocly.yaml
	cp openapi.yaml contract/released.yaml
	@echo "contract/released.yaml is now info.version $$(awk '/^  version:/ {print $$2; exit}' openapi.yaml); commit it with the release"

## generate: regenerate gen/ and the TypeScript SDK's types (sdk/typescript/src/schema.ts) from openapi.yaml
generate:
	$(GO) run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config gen/config.yaml openapi.yaml
	$(MAKE) --no-print-directory sdk/typescript/node_modules/.installed
	cd sdk/typescript && npm run --silent generate

## check-generate: fail when gen/ is not what openapi.yaml generates
check-generate:
	@tmp=$$(mktemp -d) && \
	sed "s#^output: .*#output: $$tmp/tilegate.gen.go#" gen/config.yaml > $$tmp/config.yaml && \
	$(GO) run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config $$tmp/config.yaml openapi.yaml && \
	if ! cmp -s $$tmp/tilegate.gen.go gen/tilegate.gen.go; then \
		echo "gen/ is stale: run 'make generate' and commit the result"; diff -u gen/tilegate.gen.go $$tmp/tilegate.gen.go | head -40; rm -rf $$tmp; exit 1; \
	fi; rm -rf $$tmp; echo "gen/ is up to date"
	@$(MAKE) --no-print-directory sdk/typescript/node_modules/.installed
	@tmp=$$(mktemp -d) && \
	(cd sdk/typescript && npx --no-install openapi-typescript ../../openapi.yaml --array-length -o $$tmp/schema.ts >/dev/null) && \
	if ! cmp -s $$tmp/schema.ts sdk/typescript/src/schema.ts; then \
		echo "sdk/typescript/src/schema.ts is stale: run 'make generate' and commit the result"; diff -u sdk/typescript/src/schema.ts $$tmp/schema.ts | head -40; rm -rf $$tmp; exit 1; \
	fi; rm -rf $$tmp; echo "sdk/typescript/src/schema.ts is up to date"

build:
	$(GO) build -o bin/tilegate ./cmd/tilegate

## bench: benchmarks and loopback load comparisons (not part of make test; needs PostgreSQL)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./tiletoken/ ./origin/ ./mbtiles/ ./server/
	$(GO) run ./bench/tokens
	$(GO) run ./bench/tiles

## bench-peers: tilegate vs mbtileserver, side by side, pinned to CPUs (needs taskset and a C compiler
## for the peer; PostgreSQL modes are skipped without one); BENCH_PEERS_FLAGS="-rounds 1 -duration 2s" for a quick run
bench-peers:
	$(GO) run ./bench/peers $(BENCH_PEERS_FLAGS)
## bench-scale: management calls in accounts of 1,000, 100,000 and 1,000,000 keys, PostgreSQL and
## SQLite side by side (server on CPU 0, this load on CPU 1; needs PostgreSQL and taskset)
bench-scale:
	taskset -c 1 $(GO) run ./bench/scale $(BENCH_SCALE_FLAGS)
## bench-faults: database faults (black hole, cut, restart) under a mixed load, through a TCP proxy (needs PostgreSQL)
bench-faults:
	$(GO) run ./bench/faults
## bench-storage: a 1 GiB MBTiles upload into a MinIO bucket beside one into a data directory (MB/s,
## bucket Put, peak RSS), then a second replica's first tile; BENCH_STORAGE_FLAGS="-size 100000000 -rounds 1" for a quick run
bench-storage:
	$(GO) run ./bench/storage $(BENCH_STORAGE_FLAGS)
## bench-flood: random API keys and dataset ids at full speed beside a legitimate tile client and
## management calls, PostgreSQL 1.5 ms away through a proxy; BENCH_FLOOD_FLAGS="-duration 5s" for a quick run
bench-flood:
	$(GO) run ./bench/flood $(BENCH_FLOOD_FLAGS)
