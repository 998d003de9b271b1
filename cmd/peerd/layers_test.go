package main

import (
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const modulePath = "github.com/peerd/peerd"

// layer says which peerd packages a top-level package may import and which
// standard-library packages it must not touch. DESIGN.md §2 is the source.
type layer struct {
	mayImport []string // peerd top-level packages, e.g. "identity"
	forbidStd []string // import paths or prefixes ending in "/"
}

// noIO is what a pure core must not import: no sockets, no files, no processes.
var noIO = []string{"net", "net/", "os", "os/", "syscall", "io/ioutil", "database/", "log"}

var layers = map[string]layer{
	"crdt":      {forbidStd: noIO},
	"identity":  {forbidStd: []string{"net", "net/", "syscall"}},
	"transport": {mayImport: []string{"identity"}},
	"gossip":    {mayImport: []string{"transport", "identity"}},
	"resolver":  {},
	"peer":      {mayImport: []string{"crdt", "gossip", "transport", "identity", "resolver"}},
	"sim":       {mayImport: []string{"crdt", "gossip", "transport", "identity", "resolver", "peer"}},
	"cmd":       {mayImport: []string{"crdt", "gossip", "transport", "identity", "resolver", "peer", "sim"}},
}

// exceptions are sub-packages whose layer differs from their parent's.
// crdt/store is the replica's durable store: it does file I/O on purpose,
// and may import its parent.
var exceptions = map[string]layer{
	"crdt/store": {mayImport: []string{"crdt"}, forbidStd: []string{"net", "net/"}},
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// goPackage is one directory with non-test Go files.
type goPackage struct {
	rel     string   // path relative to the module root, e.g. "crdt/store"
	imports []string // imports of its non-test files
	hasDoc  bool     // some non-test file carries a package doc comment
}

func listPackages(t testing.TB) []goPackage {
	t.Helper()
	root := repoRoot(t)
	var pkgs []goPackage
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "docs") {
			return filepath.SkipDir
		}
		bp, err := build.ImportDir(path, build.ImportComment)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		p := goPackage{rel: filepath.ToSlash(rel), imports: bp.Imports}
		fset := token.NewFileSet()
		for _, f := range bp.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(path, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				return err
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				p.hasDoc = true
			}
		}
		pkgs = append(pkgs, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func layerOf(rel string) (layer, string, bool) {
	if l, ok := exceptions[rel]; ok {
		return l, rel, true
	}
	top := strings.SplitN(rel, "/", 2)[0]
	l, ok := layers[top]
	return l, top, ok
}

// violations returns what package rel breaks of DESIGN.md §2 by importing imports.
func violations(rel string, imports []string) []string {
	l, top, ok := layerOf(rel)
	if !ok {
		return []string{"package " + rel + " is outside the fixed top level (DESIGN.md §2)"}
	}
	var out []string
	for _, imp := range imports {
		if target, ok := strings.CutPrefix(imp, modulePath+"/"); ok {
			targetTop := strings.SplitN(target, "/", 2)[0]
			if targetTop == top {
				// Within one top-level package only the exceptions matter:
				// the pure parent must not import its I/O sub-package.
				if _, exc := exceptions[target]; exc && rel == top {
					out = append(out, rel+" imports "+target+": a pure parent must not import its I/O sub-package")
				}
				continue
			}
			if !contains(l.mayImport, targetTop) {
				out = append(out, rel+" imports "+imp+"; "+top+" may import only ["+strings.Join(l.mayImport, " ")+"]")
			}
			continue
		}
		for _, f := range l.forbidStd {
			if imp == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f)) {
				out = append(out, rel+" imports "+imp+", which the "+top+" layer forbids")
			}
		}
	}
	return out
}

func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < len(layers)-1 {
		t.Fatalf("found only %d packages; is the walk broken?", len(pkgs))
	}
	for _, p := range pkgs {
		for _, v := range violations(p.rel, p.imports) {
			t.Error(v)
		}
	}
}

func TestEveryPackageHasDoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if !p.hasDoc {
			t.Errorf("package %s has no package doc comment saying what it owns", p.rel)
		}
	}
}

// TestLayeringCatchesViolations proves the checker is not vacuous.
func TestLayeringCatchesViolations(t *testing.T) {
	cases := []struct {
		rel     string
		imports []string
		want    int
	}{
		{"crdt", []string{"net", modulePath + "/peer", "os", "sort"}, 3},
		{"crdt", []string{modulePath + "/crdt/store"}, 1},
		{"crdt/store", []string{"os", modulePath + "/crdt"}, 0},
		{"gossip", []string{modulePath + "/crdt", modulePath + "/transport"}, 1},
		{"resolver", []string{modulePath + "/peer"}, 1},
		{"transport", []string{modulePath + "/identity", "net"}, 0},
		{"peer", []string{modulePath + "/sim"}, 1},
		{"extra", nil, 1},
	}
	for _, c := range cases {
		if got := violations(c.rel, c.imports); len(got) != c.want {
			t.Errorf("violations(%s, %v) = %q, want %d", c.rel, c.imports, got, c.want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
