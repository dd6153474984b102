// Package modtest checks that linger's modules can be fetched by a user as
// they will be once tagged: it serves the working tree as module versions
// from a local file GOPROXY and builds a quick start that depends on them,
// in a module of its own outside this repository. `make test-modules`
// runs it (LINGER_MODTEST=1); elsewhere the test skips, for it needs the
// Go module proxy for the third-party modules.
package modtest

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	rootPath = "github.com/linger-go/linger"
	promPath = rootPath + "/lingerprom"
)

// quickStart is the user's program: an http.Server served by lingerhttp,
// with lingerprom's collector registered. It only has to build. It uses
// net.Listen because Serve wraps the listener it is given with linger.
const quickStart = `package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/linger-go/linger/lingerprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	m := lingerprom.NewServerCollector(lingerprom.Opts{})
	prometheus.MustRegister(m)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Addr: ":8080", Handler: mux}
	ls := lingerhttp.New(srv, lingerhttp.Config{Linger: linger.Config{OnClose: m.OnClose(nil)}})
	m.Watch(ls)
	mux.Handle("/ready", ls.ReadyHandler())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := ls.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
`

// TestModules tags nothing: it writes the files a module proxy would
// serve for the tags v<X> and lingerprom/v<X> (the multi-module
// convention), X being the version of linger that lingerprom/go.mod
// requires, then runs `go get` on both and `go build` on the quick start
// with that directory first in GOPROXY. Our modules come from there
// alone: the checksum database is not asked about them (GONOSUMDB) and
// the module cache is a fresh one, so no earlier copy is used.
func TestModules(t *testing.T) {
	if os.Getenv("LINGER_MODTEST") == "" {
		t.Skip("run by make test-modules (LINGER_MODTEST=1): it needs the Go module proxy")
	}
	start := time.Now()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if p := modulePath(t, filepath.Join(root, "go.mod")); p != rootPath {
		t.Fatalf("%s/go.mod declares module %q, want %q", root, p, rootPath)
	}
	promDir := filepath.Join(root, "lingerprom")
	if p := modulePath(t, filepath.Join(promDir, "go.mod")); p != promPath {
		t.Fatalf("lingerprom/go.mod declares module %q, want %q", p, promPath)
	}
	version := requiredVersion(t, filepath.Join(promDir, "go.mod"), rootPath)
	t.Logf("simulating the tags %s and lingerprom/%s", version, version)

	goenv := goEnv(t, "GOPROXY", "GOFLAGS", "GOMODCACHE")
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy")
	files := moduleFiles(t, root)
	rootFiles := writeModule(t, proxy, rootPath, version, root, root, files)
	promFiles := writeModule(t, proxy, promPath, version, root, promDir, files)
	// The root module's zip must hold the library and nothing of the
	// nested modules (a user of linger would download bench's results).
	for _, f := range rootFiles {
		if strings.HasPrefix(f, "lingerprom/") || strings.HasPrefix(f, "bench/") {
			t.Errorf("the %s zip holds %s, a file of a nested module", rootPath, f)
		}
	}
	for _, want := range []string{"go.mod", "listener.go", "lingerhttp/lingerhttp.go"} {
		if !slices.Contains(rootFiles, want) {
			t.Errorf("the %s zip lacks %s", rootPath, want)
		}
	}
	if !slices.Contains(promFiles, "lingerprom.go") {
		t.Errorf("the %s zip lacks lingerprom.go", promPath)
	}

	// The user's module, outside the repository. Its go.sum starts with
	// the sums this repository has already verified for the third-party
	// modules, so the checksum database needs no asking about those.
	user := filepath.Join(tmp, "quickstart")
	if err := os.Mkdir(user, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(user, "go.mod"), "module example.com/quickstart\n\ngo 1.23.0\n")
	write(t, filepath.Join(user, "main.go"), quickStart)
	write(t, filepath.Join(user, "go.sum"), mergeSums(t, filepath.Join(root, "go.sum"), filepath.Join(promDir, "go.sum")))

	// Our proxy first, then the download cache of this machine's module
	// cache (a valid file proxy: what is there needs no network), then the
	// proxy configured here for the third-party modules.
	goproxy := "file://" + filepath.ToSlash(proxy)
	if goenv["GOMODCACHE"] != "" {
		goproxy += ",file://" + filepath.ToSlash(filepath.Join(goenv["GOMODCACHE"], "cache", "download"))
	}
	if goenv["GOPROXY"] != "" {
		goproxy += "," + goenv["GOPROXY"]
	}
	env := append(os.Environ(),
		"GO111MODULE=on",
		"GOWORK=off", // not this repository's go.work
		"GOTOOLCHAIN=local",
		"GOPROXY="+goproxy,
		"GOPRIVATE=", // else GONOPROXY would fetch our modules from github.com
		"GONOPROXY=",
		"GONOSUMDB="+rootPath, // also matches lingerprom, a path below it
		"GOMODCACHE="+filepath.Join(tmp, "modcache"),
		"GOFLAGS="+strings.TrimSpace(goenv["GOFLAGS"]+" -mod=mod -modcacherw"),
	)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = user
		cmd.Env = env
		began := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("go %s: %v", args[0], time.Since(began).Round(time.Millisecond))
		return string(out)
	}
	run("get", rootPath+"@"+version, promPath+"@"+version)
	// Both from our proxy, at the tagged version, not from the repository.
	for _, line := range strings.Split(strings.TrimSpace(run("list", "-m", "-f", "{{.Path}} {{.Version}} {{.Replace}} {{.Dir}}", rootPath, promPath)), "\n") {
		f := strings.Fields(line)
		wantDir := filepath.Join(tmp, "modcache", filepath.FromSlash(f[0])+"@"+version)
		if len(f) != 4 || f[1] != version || f[2] != "<nil>" || f[3] != wantDir {
			t.Errorf("go list -m: %q, want %s %s <nil> %s", line, f[0], version, wantDir)
		}
	}
	// The module cache being new every run, the third-party packages are
	// compiled every run (about 10 s); -trimpath would let them come from
	// the build cache, but it also compiles the standard library anew
	// (about 30 s more on a fresh machine, where make vet has built it
	// already without -trimpath).
	run("build", "-o", filepath.Join(tmp, "quickstart.bin"), ".")
	t.Logf("fetched and built in %v", time.Since(start).Round(time.Millisecond))
}

// moduleFiles lists the repository's files (slash-separated, relative to
// root) as a commit of the working tree would hold them: git's tracked and
// untracked files, less those git ignores and those deleted. Without git,
// every file under root.
func moduleFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" {
				continue
			}
			if fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(f))); err == nil && fi.Mode().IsRegular() {
				files = append(files, f)
			}
		}
	} else {
		t.Logf("git ls-files: %v; taking every file under %s", err, root)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				rel, err := filepath.Rel(root, p)
				if err != nil {
					return err
				}
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(files)
	files = slices.Compact(files)
	return files
}

// writeModule writes into the file proxy at proxy the list, .info, .mod
// and .zip files of module path at version, from those of files (relative
// to the repository's root) that are under dir, root or a subdirectory. As the go command's module zips do (see "Module zip
// files" in https://go.dev/ref/mod), it leaves out directories holding
// another go.mod (nested modules), version-control directories and a
// top-level vendor directory. It returns the files it zipped, relative
// to dir.
func writeModule(t *testing.T, proxy, path, version, root, dir string, files []string) []string {
	t.Helper()
	prefix, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	prefix = filepath.ToSlash(prefix) + "/"
	if prefix == "./" {
		prefix = ""
	}
	nested := map[string]bool{} // directory (relative to dir) -> holds a go.mod
	inNested := func(rel string) bool {
		for d := rel; ; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				return false
			}
			d = d[:i]
			has, ok := nested[d]
			if !ok {
				_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(d), "go.mod"))
				has = err == nil
				nested[d] = has
			}
			if has {
				return true
			}
		}
	}

	at := filepath.Join(proxy, filepath.FromSlash(path), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var zipped []string
	for _, f := range files {
		rel, ok := strings.CutPrefix(f, prefix)
		if !ok {
			continue
		}
		first, _, _ := strings.Cut(rel, "/")
		if first == "vendor" || rel == ".hg_archival.txt" || inNested(rel) ||
			slices.ContainsFunc(strings.Split(rel, "/"), func(e string) bool {
				return e == ".git" || e == ".hg" || e == ".svn" || e == ".bzr"
			}) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(path + "@" + version + "/" + rel)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		zipped = append(zipped, rel)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(at, "list"), version+"\n")
	write(t, filepath.Join(at, version+".info"), string(info))
	write(t, filepath.Join(at, version+".mod"), string(gomod))
	write(t, filepath.Join(at, version+".zip"), buf.String())
	return zipped
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+(\S+)\s*$`)

func modulePath(t *testing.T, gomod string) string {
	t.Helper()
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	m := moduleLine.FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no module line", gomod)
	}
	return string(m[1])
}

var releaseVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// requiredVersion returns the version of module path that gomod requires,
// and fails if it is not a release a tag can name (v0.0.0, a
// pseudo-version and a pre-release are not) or if gomod replaces path:
// users' builds ignore a dependency's replace directives.
func requiredVersion(t *testing.T, gomod, path string) string {
	t.Helper()
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	var version string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		f = slices.DeleteFunc(f, func(s string) bool { return s == "replace" })
		switch {
		case len(f) >= 2 && f[0] == path && (f[1] == "=>" || len(f) >= 3 && f[2] == "=>"):
			t.Errorf("%s replaces %s: a user's build ignores that; go.work serves development", gomod, path)
		case len(f) >= 2 && f[0] == path:
			version = f[1]
		}
	}
	if version == "" {
		t.Fatalf("%s does not require %s", gomod, path)
	}
	if !releaseVersion.MatchString(version) || version == "v0.0.0" {
		t.Fatalf("%s requires %s %s, not a release version (vX.Y.Z, the tag to make)", gomod, path, version)
	}
	return version
}

// mergeSums returns the lines of the go.sum files, each once, but none
// of our own modules: once a version is tagged, lingerprom/go.sum holds
// the sums of the real one, which the working tree's differ from.
func mergeSums(t *testing.T, files ...string) string {
	t.Helper()
	var lines []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			mod, _, _ := strings.Cut(line, " ")
			if mod != rootPath && !strings.HasPrefix(mod, rootPath+"/") {
				lines = append(lines, line)
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(slices.Compact(lines), "\n") + "\n"
}

// goEnv returns this machine's settings of the named go env variables.
func goEnv(t *testing.T, names ...string) map[string]string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	vals := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(vals) != len(names) {
		t.Fatalf("go env %s: %d lines, want %d", strings.Join(names, " "), len(vals), len(names))
	}
	env := map[string]string{}
	for i, n := range names {
		env[n] = vals[i]
	}
	return env
}

func write(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
