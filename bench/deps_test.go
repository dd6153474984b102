package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The bench's programs link no test code: test seams and helpers that
// import testing (or testify) stay in _test.go files or in packages only
// tests import (issue 24).
func TestProgramsLinkNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "./internal/...", "./examples/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "github.com/stretchr/testify") {
			t.Errorf("a bench program links %s", pkg)
		}
	}
}
