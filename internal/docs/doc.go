// Package docs holds the test that compiles every Go code block of the
// repository's Markdown documentation (README.md, CONTRIBUTING.md and
// docs/*.md), so that what a reader pastes builds. See docs_test.go for the
// fragment convention.
package docs
