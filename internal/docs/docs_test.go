package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Markdown files whose ```go blocks must compile, relative to the
// repository root.
var docGlobs = []string{"README.md", "CONTRIBUTING.md", "docs/*.md"}

// A block is either a whole file (it has a package clause) and is compiled
// as it is, or a fragment whose first line says where it goes:
//
//	// fragment: inside func main, with srv *http.Server, ctx context.Context
//	// fragment: top level, with ln net.Listener
//
// "inside func main" puts the block in the body of main; "top level" puts it
// at file level, next to an empty main. Each "with NAME TYPE" becomes a
// package-level variable. Imports are added for the package names the code
// uses (knownImports); nothing else is added, so an undefined name, a
// misspelt field or an unused variable fails the test as it would fail the
// reader.
var fragmentRE = regexp.MustCompile(`^//\s*fragment:\s*(inside func main|top level)\s*(?:,\s*with\s+(.*))?$`)

// knownImports maps the package names documentation code may use to their
// import paths.
var knownImports = map[string]string{
	"context":    "context",
	"errors":     "errors",
	"expvar":     "expvar",
	"flag":       "flag",
	"fmt":        "fmt",
	"io":         "io",
	"log":        "log",
	"net":        "net",
	"http":       "net/http",
	"os":         "os",
	"signal":     "os/signal",
	"strconv":    "strconv",
	"syscall":    "syscall",
	"time":       "time",
	"tls":        "crypto/tls",
	"linger":     "github.com/linger-go/linger",
	"lingerhttp": "github.com/linger-go/linger/lingerhttp",
	"lingerprom": "github.com/linger-go/linger/lingerprom",
	"prometheus": "github.com/prometheus/client_golang/prometheus",
	"promhttp":   "github.com/prometheus/client_golang/prometheus/promhttp",
}

type block struct {
	file string // relative to the repository root
	line int    // of the opening fence
	code string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// extractBlocks returns the ```go blocks of a Markdown file.
func extractBlocks(name string, data []byte) []block {
	var out []block
	var cur *block
	var buf strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && (trimmed == "```go" || trimmed == "```golang"):
			cur = &block{file: name, line: n}
			buf.Reset()
		case cur != nil && trimmed == "```":
			cur.code = buf.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
	}
	return out
}

// source turns a block into a compilable Go file. The block's first line is
// the file's line 1+offset.
func source(b block) (src string, offset int, err error) {
	first, _, _ := strings.Cut(strings.TrimSpace(b.code), "\n")
	if hasPackageClause(b.code) {
		return b.code, 0, nil
	}
	m := fragmentRE.FindStringSubmatch(strings.TrimSpace(first))
	if m == nil {
		return "", 0, fmt.Errorf("%v: a go block without a package clause must start with a comment such as %q", b, "// fragment: inside func main, with srv *http.Server")
	}
	var body strings.Builder
	body.WriteString("\n") // the blank line after the import block
	if m[2] != "" {
		for _, v := range strings.Split(m[2], ",") {
			v = strings.TrimSpace(v)
			if strings.Count(v, " ") < 1 {
				return "", 0, fmt.Errorf("%v: fragment context %q is not NAME TYPE", b, v)
			}
			fmt.Fprintf(&body, "var %s\n", v)
		}
	}
	if m[1] == "inside func main" {
		body.WriteString("\nfunc main() {\n")
	} else {
		body.WriteString("\n")
	}
	offset = strings.Count(body.String(), "\n")
	body.WriteString(b.code)
	if m[1] == "inside func main" {
		body.WriteString("}\n")
	} else {
		body.WriteString("\nfunc main() {}\n")
	}
	var imports []string
	for _, name := range usedPackages(body.String()) {
		imports = append(imports, fmt.Sprintf("\t%q\n", knownImports[name]))
	}
	slices.Sort(imports)
	head := "package main\n\nimport (\n" + strings.Join(imports, "") + ")\n"
	return head + body.String(), offset + strings.Count(head, "\n"), nil
}

func hasPackageClause(code string) bool {
	var s scanner.Scanner
	fset := token.NewFileSet()
	src := []byte(code)
	s.Init(fset.AddFile("", fset.Base(), len(src)), src, nil, 0)
	_, tok, _ := s.Scan()
	return tok == token.PACKAGE
}

// usedPackages returns the known package names that appear in code as
// NAME. outside comments and strings.
func usedPackages(code string) []string {
	var s scanner.Scanner
	fset := token.NewFileSet()
	src := []byte(code)
	s.Init(fset.AddFile("", fset.Base(), len(src)), src, nil, 0)
	seen := map[string]bool{}
	var prev string
	var prevTok, prevPrevTok token.Token
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			break
		}
		// NAME followed by ".", and not itself after "." (a field x.http.Y).
		if tok == token.PERIOD && prevTok == token.IDENT && prevPrevTok != token.PERIOD {
			if _, ok := knownImports[prev]; ok {
				seen[prev] = true
			}
		}
		prevPrevTok, prevTok, prev = prevTok, tok, lit
	}
	var out []string
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// repoRoot is two directories up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

func collectBlocks(t *testing.T, root string) []block {
	t.Helper()
	var blocks []block
	for _, g := range docGlobs {
		names, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, name)
			blocks = append(blocks, extractBlocks(rel, data)...)
		}
	}
	return blocks
}

// requireLines returns the requirement lines of a go.mod ("path version"),
// from single-line and block forms.
func requireLines(gomod string) []string {
	var out []string
	inBlock := false
	for _, line := range strings.Split(gomod, "\n") {
		line = strings.TrimSpace(line)
		if c, _, ok := strings.Cut(line, "//"); ok {
			line = strings.TrimSpace(c)
		}
		switch {
		case line == "require (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock && line != "":
			out = append(out, line)
		case strings.HasPrefix(line, "require ") && !strings.HasSuffix(line, "("):
			out = append(out, strings.TrimSpace(strings.TrimPrefix(line, "require ")))
		}
	}
	return out
}

type compiled struct {
	block
	offset int // lines of the generated file before the block's first line
}

// writeModule writes one module with a package per block and returns the
// block of each package directory.
func writeModule(t *testing.T, root, dir string, blocks []block) map[string]compiled {
	t.Helper()
	var gomod strings.Builder
	gomod.WriteString("module docscheck\n\ngo 1.23.0\n\nrequire (\n")
	gomod.WriteString("\tgithub.com/linger-go/linger v0.0.0\n\tgithub.com/linger-go/linger/lingerprom v0.0.0\n")
	var sum []byte
	for _, mod := range []string{"go", "lingerprom/go"} {
		data, err := os.ReadFile(filepath.Join(root, mod+".mod"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range requireLines(string(data)) {
			if !strings.HasPrefix(r, "github.com/linger-go/") {
				fmt.Fprintf(&gomod, "\t%s\n", r)
			}
		}
		s, err := os.ReadFile(filepath.Join(root, mod+".sum"))
		if err == nil {
			sum = append(sum, s...)
		}
	}
	fmt.Fprintf(&gomod, ")\n\nreplace github.com/linger-go/linger => %s\n\nreplace github.com/linger-go/linger/lingerprom => %s\n",
		root, filepath.Join(root, "lingerprom"))
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]compiled{}
	for i, b := range blocks {
		src, offset, err := source(b)
		if err != nil {
			t.Error(err)
			continue
		}
		pkg := fmt.Sprintf("b%02d", i)
		if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pkg, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		pkgs[pkg] = compiled{b, offset}
	}
	return pkgs
}

// TestDocBlocksCompile builds and vets every Go block of the documentation
// in one scratch module that replaces this repository's two library modules
// with the working tree.
func TestDocBlocksCompile(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to compile the documentation's code: %v", err)
	}
	root := repoRoot(t)
	blocks := collectBlocks(t, root)
	if len(blocks) == 0 {
		t.Fatal("no go blocks found in the documentation")
	}
	dir := t.TempDir()
	pkgs := writeModule(t, root, dir, blocks)
	if t.Failed() {
		return
	}
	cmd := exec.Command(gobin, "vet", "./...")
	cmd.Dir = dir
	// -mod=mod lets the go command complete the scratch go.mod's
	// requirements; GOWORK=off keeps a go.work of the caller's out.
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "GOWORK=off", "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Logf("%d go blocks compiled and vetted", len(blocks))
		return
	}
	t.Errorf("documentation code does not compile or vet (%v):\n%s", err, markdownPositions(string(out), pkgs))
	if os.Getenv("DOCS_KEEP") != "" {
		keep, _ := os.MkdirTemp("", "docscheck")
		_ = os.CopyFS(keep, os.DirFS(dir))
		t.Logf("scratch module kept in %s", keep)
	}
}

var posRE = regexp.MustCompile(`(?:\./)?(b\d+)/main\.go:(\d+)`)

// markdownPositions rewrites the go command's positions in the scratch
// module (b03/main.go:12:5) into the Markdown file's (README.md:140:5).
func markdownPositions(out string, pkgs map[string]compiled) string {
	out = posRE.ReplaceAllStringFunc(out, func(m string) string {
		sub := posRE.FindStringSubmatch(m)
		c, ok := pkgs[sub[1]]
		if !ok {
			return m
		}
		var n int
		fmt.Sscan(sub[2], &n)
		// The fence is on c.line; the block's first line is c.line+1.
		return fmt.Sprintf("%s:%d", c.file, c.line+n-c.offset)
	})
	for pkg, c := range pkgs {
		out = strings.ReplaceAll(out, "docscheck/"+pkg, c.block.String())
	}
	return out
}

// TestFragmentSource pins the fragment convention: a fragment is compiled
// in the context its first line states, with the imports it uses, and a
// block that states nothing is an error.
func TestFragmentSource(t *testing.T) {
	src, offset, err := source(block{file: "x.md", line: 1, code: "// fragment: inside func main, with srv *http.Server\nls := lingerhttp.New(srv, lingerhttp.Config{}) // a comment about linger.Config\n_ = ls\n"})
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(src, "\n"); !strings.HasPrefix(lines[offset], "// fragment:") {
		t.Errorf("offset %d does not point at the fragment's first line:\n%s", offset, src)
	}
	for _, want := range []string{"\"net/http\"", "\"github.com/linger-go/linger/lingerhttp\"", "var srv *http.Server", "func main() {\n// fragment"} {
		if !strings.Contains(src, want) {
			t.Errorf("fragment source lacks %q:\n%s", want, src)
		}
	}
	if strings.Contains(src, "\"github.com/linger-go/linger\"\n") {
		t.Errorf("a package named only in a comment was imported:\n%s", src)
	}
	if _, _, err := source(block{file: "x.md", line: 1, code: "ln, err := linger.Listen(\"tcp\", \":8080\", linger.Config{})\n"}); err == nil {
		t.Error("a block with neither a package clause nor a fragment comment was accepted")
	}
}
