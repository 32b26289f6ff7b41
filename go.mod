module github.com/safe-run/safe-run

go 1.26.8
