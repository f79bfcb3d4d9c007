package placement

import "strings"

// Coarse round-trip times for the latency penalty when no measured table is
// given: regions are mapped to an area by their name (the clouds' naming
// conventions: "us-east-1", "europe-west4", "eastus", "asia-northeast1",
// runpod's country codes, ...). Same region: 0 ms; same area: 30 ms;
// otherwise the typical RTT between the two areas' main hubs (public
// inter-region latency tables put them within about 20% of these).
var areaRTTms = map[[2]string]float64{
	{"na-east", "na-west"}: 65, {"na-east", "eu"}: 80, {"na-west", "eu"}: 140,
	{"na-east", "sa"}: 120, {"na-west", "sa"}: 170, {"eu", "sa"}: 190,
	{"na-east", "asia"}: 190, {"na-west", "asia"}: 110, {"eu", "asia"}: 220,
	{"na-east", "oceania"}: 200, {"na-west", "oceania"}: 140, {"eu", "oceania"}: 260,
	{"asia", "oceania"}: 110, {"sa", "asia"}: 280, {"sa", "oceania"}: 300,
	{"me", "eu"}: 90, {"me", "na-east"}: 160, {"me", "na-west"}: 220, {"me", "asia"}: 120,
	{"me", "sa"}: 280, {"me", "oceania"}: 190,
	{"af", "eu"}: 150, {"af", "na-east"}: 220, {"af", "na-west"}: 280, {"af", "asia"}: 280,
	{"af", "sa"}: 330, {"af", "oceania"}: 300, {"af", "me"}: 150,
}

// sameAreaRTTms is the RTT between two regions of one area.
const sameAreaRTTms = 30

// EstimateRTTms guesses the RTT between two regions from their names. An
// unrecognised region is DefaultRTTms from everything but itself.
func EstimateRTTms(a, b string) float64 {
	if a == b {
		return 0
	}
	x, y := area(a), area(b)
	switch {
	case x == "" || y == "":
		return DefaultRTTms
	case x == y:
		return sameAreaRTTms
	}
	if v, ok := areaRTTms[[2]string{x, y}]; ok {
		return v
	}
	if v, ok := areaRTTms[[2]string{y, x}]; ok {
		return v
	}
	return DefaultRTTms
}

// area maps a region name to a coarse area, or "".
func area(region string) string {
	r := strings.ToLower(region)
	switch r {
	// runpod and other country-coded regions
	case "us":
		return "na-east"
	case "ca":
		return "na-east"
	case "cz", "is", "nl", "no", "ro", "se", "de", "fr", "gb", "uk", "fi", "pl", "es", "it", "ie", "ch", "be", "at":
		return "eu"
	case "jp", "kr", "sg", "in", "hk", "tw":
		return "asia"
	case "au", "nz":
		return "oceania"
	case "br", "cl":
		return "sa"
	}
	for _, p := range []struct{ prefix, area string }{
		{"us-west", "na-west"}, {"us-east", "na-east"}, {"us-central", "na-east"}, {"us-south", "na-east"},
		{"us-north", "na-east"}, {"us-", "na-east"}, {"ca-", "na-east"}, {"northamerica-", "na-east"},
		{"westus", "na-west"}, {"westcentralus", "na-west"}, {"eastus", "na-east"}, {"centralus", "na-east"},
		{"northcentralus", "na-east"}, {"southcentralus", "na-east"}, {"canada", "na-east"},
		{"eu-", "eu"}, {"europe-", "eu"}, {"uk", "eu"}, {"westeurope", "eu"}, {"northeurope", "eu"},
		{"france", "eu"}, {"germany", "eu"}, {"norway", "eu"}, {"sweden", "eu"}, {"switzerland", "eu"}, {"poland", "eu"}, {"italy", "eu"},
		{"ap-southeast-2", "oceania"}, {"ap-southeast-4", "oceania"}, {"australia", "oceania"},
		{"ap-", "asia"}, {"asia-", "asia"}, {"japan", "asia"}, {"korea", "asia"}, {"india", "asia"},
		{"eastasia", "asia"}, {"southeastasia", "asia"}, {"centralindia", "asia"},
		{"me-", "me"}, {"il-", "me"}, {"uae", "me"}, {"qatar", "me"},
		{"sa-", "sa"}, {"southamerica-", "sa"}, {"brazil", "sa"},
		{"af-", "af"}, {"africa-", "af"}, {"southafrica", "af"},
	} {
		if strings.HasPrefix(r, p.prefix) {
			return p.area
		}
	}
	return ""
}

// RTTTable builds the RTT entries a Problem needs: every traffic region
// against every offering region, from the measured table where it has the
// pair and from EstimateRTTms otherwise.
func RTTTable(traffic map[string]float64, offerings []Offering, measured map[[2]string]float64) map[[2]string]float64 {
	if len(traffic) == 0 {
		return nil
	}
	regions := map[string]bool{}
	for _, o := range offerings {
		regions[o.Region] = true
	}
	out := make(map[[2]string]float64, len(traffic)*len(regions))
	for t := range traffic {
		for r := range regions {
			key := [2]string{t, r}
			if v, ok := measured[key]; ok {
				out[key] = v
			} else if v, ok := measured[[2]string{r, t}]; ok {
				out[key] = v
			} else {
				out[key] = EstimateRTTms(t, r)
			}
		}
	}
	return out
}
