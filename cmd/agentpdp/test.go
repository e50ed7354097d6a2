package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/policytest"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// testCmd is agentpdp test: policy test suites.
type testCmd struct {
	streams
	policies, junit, onError string
	asJSON, verbose          bool
	paths                    []string // suite files or directories; default DIR/tests
}

func newTestCmd() *cobra.Command {
	c := &testCmd{}
	cmd := &cobra.Command{
		Use:   "test [--policies DIR] [PATH…]",
		Short: "Run policy test suites (YAML or JSON; default DIR/tests); exit 1 if any case fails",
		RunE:  runE(c, &c.paths),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.policies, "policies", DefaultConfig().Policies, "policy `directory`")
	fl.StringVar(&c.junit, "junit", "", "also write a JUnit XML report to `FILE`, for CI")
	fl.StringVar(&c.onError, "on-error", "deny", "what an erroring forbid does: deny or skip")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object per case, then a summary")
	fl.BoolVarP(&c.verbose, "verbose", "v", false, "print passing cases too")
	return cmd
}

func (c *testCmd) Run(ctx context.Context) error {
	if err := needDir("test", "policies", c.policies); err != nil {
		return err
	}
	files, err := policytest.Find(c.policies, c.paths)
	if err != nil {
		return exitError{exitFail, err}
	}
	var suites []*policytest.Suite
	for _, f := range files {
		s, err := policytest.Load(f)
		if err != nil {
			return exitError{exitFail, err}
		}
		suites = append(suites, s)
	}
	engine, err := pdp.NewEngine(pdp.Options{Policies: c.policies, OnError: wire.OnError(c.onError)})
	if err != nil {
		return usagef("test: %v", err)
	}
	snap, err := policy.LoadDir(c.policies, policy.LoadOptions{})
	if err != nil {
		return exitError{exitFail, loadFailed(c.policies, err)}
	}
	if _, err := engine.Use(ctx, snap, "test"); err != nil {
		return exitError{exitFail, err}
	}
	rep, err := policytest.Run(engine, suites)
	if err != nil {
		return exitError{exitFail, err}
	}
	if c.asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, r := range rep.Results {
			enc.Encode(r)
		}
		enc.Encode(map[string]any{"passed": rep.Passed, "failed": rep.Failed, "policies": rep.Policies, "uncovered": rep.Uncovered})
	} else {
		printReport(c.stdout, rep, c.verbose)
	}
	if c.junit != "" {
		if err := writeJUnit(c.junit, rep); err != nil {
			return err
		}
	}
	if rep.Failed > 0 {
		return exitError{exitFail, errSilent}
	}
	return nil
}

func printReport(w io.Writer, rep *policytest.Report, verbose bool) {
	for _, r := range rep.Results {
		if r.Passed {
			if verbose {
				fmt.Fprintf(w, "--- PASS: %s/%s\n", r.Suite, r.Case)
			}
			continue
		}
		fmt.Fprintf(w, "--- FAIL: %s/%s (%s)\n", r.Suite, r.Case, r.File)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "    %s\n", p)
		}
		if r.Got != nil {
			if len(r.Got.Reasons) == 0 {
				fmt.Fprintln(w, "    decided by: no policy permits the request (default deny)")
			}
			for i, reason := range r.Got.Reasons {
				label := "    decided by:"
				if i > 0 {
					label = "               "
				}
				where := reason.Detail
				if !reason.Builtin {
					where = fmt.Sprintf("%s:%d", reason.File, reason.Line)
				}
				fmt.Fprintf(w, "%s %s %s (%s)\n", label, reason.Effect, reason.Policy, where)
			}
			for _, e := range r.Got.Errors {
				fmt.Fprintf(w, "    error in %s (%s:%d): %s\n", e.Policy, e.File, e.Line, e.Message)
			}
		}
	}
	covered := rep.Policies - len(rep.Uncovered)
	fmt.Fprintf(w, "coverage: %d of %s decided at least one case\n", covered, plural.Count(rep.Policies, "policy", "policies"))
	for _, p := range rep.Uncovered {
		fmt.Fprintf(w, "    never decided: %s (%s:%d)\n", p.ID, p.File, p.Line)
	}
	status := "ok"
	if rep.Failed > 0 {
		status = "FAIL"
	}
	fmt.Fprintf(w, "%s\n%d passed, %d failed\n", status, rep.Passed, rep.Failed)
}

// writeJUnit writes the report in the JUnit XML that CI systems read. Times
// are plain decimals in seconds (xs:decimal: Jenkins' xUnit and Bazel
// reject exponents such as 3.7751e-05). A case that could not be evaluated
// (a bad request) is an error, not a failure, and counted in errors.
func writeJUnit(path string, rep *policytest.Report) error {
	type problem struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type testcase struct {
		Name      string   `xml:"name,attr"`
		Classname string   `xml:"classname,attr"`
		Time      string   `xml:"time,attr"`
		Failure   *problem `xml:"failure,omitempty"`
		Error     *problem `xml:"error,omitempty"`
	}
	type testsuite struct {
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Errors   int        `xml:"errors,attr"`
		Time     string     `xml:"time,attr"`
		Cases    []testcase `xml:"testcase"`
		elapsed  time.Duration
	}
	var suites []*testsuite
	byName := map[string]*testsuite{}
	var total time.Duration
	tests, failures, errs := 0, 0, 0
	for _, r := range rep.Results {
		s, ok := byName[r.Suite]
		if !ok {
			s = &testsuite{Name: r.Suite}
			byName[r.Suite] = s
			suites = append(suites, s)
		}
		tc := testcase{Name: r.Case, Classname: r.Suite, Time: seconds(r.Elapsed)}
		s.Tests++
		tests++
		s.elapsed += r.Elapsed
		total += r.Elapsed
		if !r.Passed {
			p := &problem{Message: r.Problems[0], Text: strings.Join(r.Problems, "\n")}
			if r.Got == nil {
				tc.Error = p
				s.Errors++
				errs++
			} else {
				tc.Failure = p
				s.Failures++
				failures++
			}
		}
		s.Cases = append(s.Cases, tc)
	}
	for _, s := range suites {
		s.Time = seconds(s.elapsed)
	}
	b, err := xml.MarshalIndent(struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []*testsuite `xml:"testsuite"`
	}{Tests: tests, Failures: failures, Errors: errs, Time: seconds(total), Suites: suites}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o644); err != nil {
		return fmt.Errorf("test: --junit: %w", err)
	}
	return nil
}

// seconds is d as a plain decimal number of seconds, to the microsecond.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
}
