# aloft: `make demo` runs the product end to end; `make test` runs every test.
GO ?= go

.PHONY: build demo test bench-gateway bench-deploy clean

build:
	$(GO) build -o bin/aloft ./cmd/aloft
	$(GO) build -o bin/aloft-completions ./examples/completions

demo:
	scripts/demo.sh

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...

bench-gateway:
	$(GO) run ./bench/gateway

clean:
	rm -rf bin .aloft

bench-deploy:
	$(GO) run ./bench/deploy
