# The two commands of the README.
#   make bench  runs the close-behaviour benchmark and prints its table; its
#               files go to bench/results/latest/, which git ignores.
#   make test   runs every test (the library's, lingerprom's, then the bench
#               module's), after make vet and make test-modules.
# make test-modules fetches the library and lingerprom as a user would, from
# a file GOPROXY made from this tree as if v<X> and lingerprom/v<X> were
# tagged, and builds a quick start with them (CONTRIBUTING.md, Releasing).
# The modules are developed together through go.work (bench: bench/go.work);
# lingerprom/go.mod requires the library's release version and replaces
# nothing.
# make bench-publish runs the default benchmark and the restart scenario and
# refreshes the tracked copy in bench/results/ that the README quotes.

.PHONY: test test-modules bench bench-quick bench-publish vet

test: vet test-modules
	go test -race -count=1 -shuffle=on ./...
	cd lingerprom && go test -race -count=1 -shuffle=on ./...
	cd bench && go test -race -count=1 ./...

test-modules:
	LINGER_MODTEST=1 go test -count=1 -run '^TestModules$$' ./internal/modtest

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo "gofmt: files above need formatting"; exit 1; }
	go vet ./...
	GOOS=windows go vet ./...
	GOOS=darwin go vet ./...
	cd lingerprom && go vet ./...
	cd bench && go vet ./...

bench:
	bench/run

bench-quick:
	bench/run -quick -check
	bench/run -quick -check -only restart
	bench/run -quick -check -only faults
	bench/run -check -only soak

bench-publish:
	bench/run -publish
	bench/run -publish -only restart
