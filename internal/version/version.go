// Package version holds the build version of both binaries, set by the linker:
//
//	-ldflags "-X github.com/imcallback/callback-operator/internal/version.Version=v0.1.0"
package version

// Version is the release this binary was built from; "dev" for an unstamped build.
var Version = "dev"
