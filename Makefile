# aloft: `make demo` runs the product end to end; `make test` runs every test.
GO ?= go

.PHONY: build demo test fuzz bench-gateway bench-deploy clean

# Each fuzz target runs for FUZZTIME in CI; run longer by hand: make fuzz FUZZTIME=10m
FUZZTIME ?= 10s
FUZZ_TARGETS = ./api/v1:FuzzParseSpec ./internal/auth:FuzzParseBearer ./internal/secrets:FuzzOpen ./internal/server:FuzzAPIDecode ./internal/gateway:FuzzReadRequest

build:
	$(GO) build -o bin/aloft ./cmd/aloft
	$(GO) build -o bin/aloft-completions ./examples/completions

demo:
	scripts/demo.sh

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...
	$(MAKE) fuzz

fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -timeout 0 $$pkg || exit 1; \
	done

bench-gateway:
	$(GO) run ./bench/gateway

clean:
	rm -rf bin .aloft

bench-deploy:
	$(GO) run ./bench/deploy
