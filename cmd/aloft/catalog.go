package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
	"github.com/spf13/cobra"
)

func newCatalogCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "Cloud price catalogs: import SkyPilot catalog CSVs, list offerings (shared by all workspaces)"}
	var cloud string
	imp := &cobra.Command{
		Use:   "import FILE --cloud NAME",
		Short: "Import a SkyPilot-format catalog CSV as a cloud's price catalog (admin of all workspaces)",
		Long: `Import a cloud price catalog in SkyPilot's format (a vms.csv of
github.com/skypilot-org/skypilot-catalog), replacing the cloud's previous
catalog. Columns are found by name. The whole file is checked first: a
missing column, a bad or negative number, a malformed GpuInfo, or two
different rows for the same offering is an error naming the file, line and
column, and nothing is imported. Rows repeated exactly and rows with no
price are skipped and counted. GCP prices GPUs and TPUs apart from their
VMs. Those rows are kept as offerings named <accelerator>-<count>x (e.g.
H100-8x), with no vCPUs, and their price leaves out the VM.`,
		Example: `  aloft catalog import vms.csv --cloud aws
  aloft catalog ls --gpu H100 --min-gpus 8`,
		Args: exactArgs(1, "a catalog CSV file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if cloud == "" {
				return &usageError{"catalog import needs --cloud NAME: the cloud the catalog is for, e.g. --cloud aws\nusage: " + cmd.UseLine()}
			}
			if !v1.IsDNS1123Label(cloud) {
				return &usageError{fmt.Sprintf("--cloud %q is not a cloud name: use lower-case letters, digits and '-' (a DNS-1123 label), e.g. aws", cloud)}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return &exitErr{exitError, err}
			}
			defer f.Close()
			sum, err := g.client().ImportCatalog(cmd.Context(), cloud, filepath.Base(args[0]), f)
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, sum, func(w io.Writer) error { return printCatalogImport(w, args[0], sum) })
		},
	}
	imp.Flags().StringVar(&cloud, "cloud", "", "the cloud the catalog is for (required), e.g. aws")
	imp.RegisterFlagCompletionFunc("cloud", cobra.NoFileCompletions)

	var q client.OfferingQuery
	ls := &cobra.Command{
		Use:     "ls [--cloud C] [--region R] [--gpu H100] [--min-gpus N] [--spot] [--limit N]",
		Aliases: []string{"list"},
		Short:   "List offerings of the imported catalogs, cheapest first",
		Long: `List offerings, cheapest first: by on-demand price (offerings with only a
spot price last), or by spot price with --spot, which keeps only offerings
that have one. --gpu matches the accelerator name in any case. At most
--limit offerings are shown (default 100, at most 10000).`,
		Example: "  aloft catalog ls --gpu H100 -o table\n  aloft catalog ls --cloud aws --region us-east-1 --gpu A100 --min-gpus 8 --spot",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if q.MinGPUs < 0 || q.Limit < 0 || q.Limit > 10000 {
				return &usageError{"--min-gpus must be 0 or more and --limit from 1 to 10000"}
			}
			l, err := g.client().ListOfferings(cmd.Context(), q)
			if err != nil {
				return err
			}
			if l.Truncated && g.output == "table" {
				defer fmt.Fprintf(cmd.ErrOrStderr(), "(the %d cheapest shown; more match: narrow the query or raise --limit)\n", len(l.Items))
			}
			return printOut(cmd.OutOrStdout(), g.output, l.Items, func(w io.Writer) error { return printOfferings(w, l.Items) })
		},
	}
	ls.Flags().StringVar(&q.Cloud, "cloud", "", "only this cloud")
	ls.Flags().StringVar(&q.Region, "region", "", "only this region")
	ls.Flags().StringVar(&q.GPU, "gpu", "", "only this accelerator, e.g. H100, A100-80GB, tpu-v2-8")
	ls.Flags().IntVar(&q.MinGPUs, "min-gpus", 0, "at least N accelerators")
	ls.Flags().BoolVar(&q.Spot, "spot", false, "only offerings with a spot price, sorted by it")
	ls.Flags().IntVar(&q.Limit, "limit", 0, "at most N offerings (server default 100, max 10000)")

	clouds := &cobra.Command{
		Use: "clouds", Short: "List the clouds with an imported catalog", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			cats, err := g.client().ListCatalogs(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, cats, func(w io.Writer) error {
				t := tw(w)
				fmt.Fprintln(t, "CLOUD\tOFFERINGS\tIMPORTED")
				for _, c := range cats {
					fmt.Fprintf(t, "%s\t%d\t%s\n", c.Cloud, c.Offerings, fmtTime(&c.ImportedAt))
				}
				return t.Flush()
			})
		},
	}
	cmd.AddCommand(imp, ls, clouds)
	return cmd
}

func printCatalogImport(w io.Writer, file string, s v1.CatalogImport) error {
	fmt.Fprintf(w, "catalog/%s imported from %s: %d offerings in %d regions (%d rows read)\n", s.Cloud, file, s.Offerings, len(s.Regions), s.Rows)
	accs := "none"
	if len(s.Accelerators) > 0 {
		accs = strings.Join(s.Accelerators, ", ")
	}
	fmt.Fprintf(w, "  accelerators (%d): %s\n", len(s.Accelerators), accs)
	fmt.Fprintf(w, "  skipped: %d duplicate rows, %d rows without a price\n", s.SkippedDuplicates, s.SkippedNoPrice)
	if s.AcceleratorOnly > 0 {
		fmt.Fprintf(w, "  %d offerings price accelerators without their VM (named <accelerator>-<count>x)\n", s.AcceleratorOnly)
	}
	return nil
}

func printOfferings(w io.Writer, offs []v1.Offering) error {
	t := tw(w)
	fmt.Fprintln(t, "CLOUD\tREGION\tZONE\tINSTANCE\tGPU\tCOUNT\tVCPUS\tMEM_GiB\tPRICE\tSPOT")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	price := func(f float64) string {
		if f == 0 {
			return "-"
		}
		return money(f)
	}
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	for _, o := range offs {
		count := "-"
		if o.Accelerator != "" {
			count = num(o.AcceleratorCount)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Cloud, o.Region, dash(o.Zone), o.InstanceType, dash(o.Accelerator), count,
			num(o.VCPUs), num(o.MemoryGiB), price(o.Price), price(o.SpotPrice))
	}
	return t.Flush()
}
