// Package testcert issues X.509 certificates for tests and the demo: a CA
// of its own and server certificates under it, written as PEM files.
//
// What it must not do: be imported by anything vsgate runs in production
// (its keys are throwaway, made per test run), or write outside the
// directory it is given.
package testcert
