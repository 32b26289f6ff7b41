// Package importer turns what users arrive with, `docker run` lines and
// compose files, into safe-run manifests: the bridge into the data flow,
// standing before package manifest. Its output is manifest text (TOML with
// comments, keys in design.md's order) that manifest.Parse loads, plus notes
// for the person converting: what was refused (--privileged), what loosens a
// secure default and so got an [insecure] item with a TODO reason, what a
// manifest cannot express, and which defaults were filled in.
//
// It is its own package rather than part of manifest or policy because it
// is neither: manifest defines and validates the contract, policy judges it,
// and the importer only reads docker's syntax and writes the contract. It
// uses policy to judge the docker command as given (policy.Container), so
// the notes name the same rules `safe-run check` and `safe-run audit` do.
// Like them it is pure: it reads files only through Options.ReadFile.
package importer
