// Command gen writes the dashboards' JSON files from their Go source (package dashboards).
// It runs from go generate in the dashboards folder; TestGeneratedInSync fails when the
// files are stale.
package main

import (
	"log"
	"os"

	"github.com/pg-batch-exporter/pg-batch-exporter/dashboards"
)

func main() {
	files, err := dashboards.Files()
	if err != nil {
		log.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
