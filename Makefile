# The two commands of the README.
#   make bench  runs the close-behaviour benchmark and prints its table; its
#               files go to bench/results/latest/, which git ignores.
#   make test   runs every test (the library's, lingerprom's, then the bench
#               module's).
# make bench-publish runs the default benchmark and the restart scenario and
# refreshes the tracked copy in bench/results/ that the README quotes.

.PHONY: test bench bench-quick bench-publish vet

test: vet
	go test -race -count=1 -shuffle=on ./...
	cd lingerprom && go test -race -count=1 -shuffle=on ./...
	cd bench && go test -race -count=1 ./...

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

bench-publish:
	bench/run -publish
	bench/run -publish -only restart
