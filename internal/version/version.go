// Package version holds the build version of both binaries, set by the linker:
//
//	-ldflags "-X github.com/imcallback/callback-operator/internal/version.Version=v0.1.0"
package version

// Version is the release this binary was built from; "dev" for an unstamped build.
var Version = "dev"

// Repository is where the operator's image (both binaries) is published.
const Repository = "ghcr.io/imcallback/callback-operator"

// Image is the operator's own image at this binary's version: what `make deploy` installs
// unless told otherwise, and what receiver pods run by default.
func Image() string { return Repository + ":" + Version }
