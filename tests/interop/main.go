// Command opk-interop drives the OpenPubkey Go reference implementation
// (github.com/openpubkey/openpubkey) so opk-sign's Python tests can check byte
// compatibility in both directions:
//
//	opk-interop mint    --out DIR [--issuer URL] [--count N] [--message STR]
//	opk-interop verify  [--issuer URL]               (JSON Lines on stdin and stdout)
//	opk-interop gqbench --jwt FILE --jwk FILE --iterations N
//	opk-interop gqsign  --jwt FILE --jwk FILE [--no-jkt]
//	opk-interop gqverify --jwt FILE --jwk FILE
//
// Every subcommand writes machine-readable output on stdout and diagnostics on
// stderr; a usage or I/O error exits with status 2.
package main

import (
	"fmt"
	"os"
)

const defaultIssuer = "https://token.actions.githubusercontent.com"

const usage = `usage:
  opk-interop mint --out DIR [--issuer URL] [--count N] [--message STR]
  opk-interop verify [--issuer URL]     < cases.jsonl > results.jsonl
  opk-interop gqbench --jwt FILE --jwk FILE --iterations N
  opk-interop gqsign --jwt FILE --jwk FILE [--no-jkt]
  opk-interop gqverify --jwt FILE --jwk FILE
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"mint":     runMint,
		"verify":   runVerify,
		"gqbench":  runGQBench,
		"gqsign":   runGQSign,
		"gqverify": runGQVerify,
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Print(usage)
		return
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "opk-interop: unknown subcommand %q\n%s", name, usage)
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "opk-interop %s: %v\n", name, err)
		os.Exit(2)
	}
}
