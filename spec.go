// Package tilegate holds the hand-written contract, embedded so the server can serve it byte for
// byte at /openapi.yaml.
package tilegate

import _ "embed"

// OpenAPIYAML is openapi.yaml as written (the generated code embeds the same document).
//
//go:embed openapi.yaml
var OpenAPIYAML []byte
