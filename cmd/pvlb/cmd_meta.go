package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// VersionCmd prints what pvlb was built from.
type VersionCmd struct {
	Output string `short:"o" default:"text" enum:"text,json" help:"Output format: ${enum}."`
}

type versionInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Time     string `json:"commit_time,omitempty"`
	Platform string `json:"platform"`
}

// Run prints the version.
func (c *VersionCmd) Run(a *app) error {
	v := versionInfo{Version: versionString(), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			case "vcs.time":
				v.Time = s.Value
			}
		}
	}
	if c.Output == "json" {
		return writeJSON(a.stdout, v)
	}
	fmt.Fprintf(a.stdout, "pvlb %s\n  go        %s\n  platform  %s\n", v.Version, v.Go, v.Platform)
	if v.Commit != "" {
		modified := ""
		if v.Modified {
			modified = " (with uncommitted changes)"
		}
		fmt.Fprintf(a.stdout, "  commit    %s%s\n", v.Commit, modified)
	}
	if v.Time != "" {
		fmt.Fprintf(a.stdout, "  time      %s\n", v.Time)
	}
	return nil
}

// HelpCmd stands for "pvlb help [COMMAND]", which Main turns into
// "pvlb [COMMAND] --help" before parsing; it is here to be listed.
type HelpCmd struct {
	Command []string `arg:"" optional:"" help:"The command to explain."`
}

// Run is not reached: Main rewrites the arguments.
func (c *HelpCmd) Run(a *app) error { return nil }

// CompletionCmd prints a completion script. The scripts have the shell
// run pvlb itself with COMP_LINE set to complete a word (kongplete's
// protocol, which knows every command, flag and enum).
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"The shell: ${enum}."`
}

// Help explains how to install the script.
func (c *CompletionCmd) Help() string {
	return `Add the line for your shell to its start-up file:

  bash (~/.bashrc):               source <(pvlb completion bash)
  zsh (~/.zshrc):                 source <(pvlb completion zsh)
  fish (~/.config/fish/config.fish): pvlb completion fish | source`
}

var completionScripts = map[string]string{
	"bash": `complete -o default -C pvlb pvlb
`,
	"zsh": `autoload -U +X bashcompinit && bashcompinit
complete -o default -C pvlb pvlb
`,
	"fish": `function __pvlb_complete
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    pvlb
end
complete -f -c pvlb -a "(__pvlb_complete)"
`,
}

// Run prints the script.
func (c *CompletionCmd) Run(a *app) error {
	_, err := fmt.Fprint(a.stdout, completionScripts[c.Shell])
	return err
}
