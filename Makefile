# The two commands of the README.
#   make bench  runs the close-behaviour benchmark and prints its table.
#   make test   runs every test (the library's, then the bench module's).

.PHONY: test bench bench-quick vet

test: vet
	go test -race -count=1 -shuffle=on ./...
	cd bench && go test -race -count=1 ./...

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo "gofmt: files above need formatting"; exit 1; }
	go vet ./...
	GOOS=windows go vet ./...
	GOOS=darwin go vet ./...
	cd bench && go vet ./...

bench:
	bench/run

bench-quick:
	bench/run -quick -check
	bench/run -quick -check -only restart
