package main

import (
	"math"
	"math/rand/v2"
	"sort"
)

// regionInfo places a catalog region on the map (approximate city of the
// data centres) and in a jurisdiction, for labels and RTTs.
type regionInfo struct {
	Lat, Lon     float64
	Jurisdiction string // us, ca, eu, uk, ch, eea (Norway, Iceland), apac, me, latam, africa
}

// regions covers every region of the five catalogs. Region names are shared
// keys across clouds (Problem.RTTms is keyed by region name), so a name used
// by two clouds (lambda's us-east-1, us-west-1, us-west-2, us-east-2) gets
// one location, the AWS one.
var regions = map[string]regionInfo{
	// AWS
	"af-south-1":     {-33.9, 18.4, "africa"},
	"ap-east-1":      {22.3, 114.2, "apac"},
	"ap-northeast-1": {35.7, 139.7, "apac"},
	"ap-northeast-2": {37.6, 127.0, "apac"},
	"ap-northeast-3": {34.7, 135.5, "apac"},
	"ap-south-1":     {19.1, 72.9, "apac"},
	"ap-southeast-1": {1.35, 103.8, "apac"},
	"ap-southeast-2": {-33.9, 151.2, "apac"},
	"ap-southeast-3": {-6.2, 106.8, "apac"},
	"ca-central-1":   {45.5, -73.6, "ca"},
	"eu-central-1":   {50.1, 8.7, "eu"},
	"eu-north-1":     {59.3, 18.1, "eu"},
	"eu-south-1":     {45.5, 9.2, "eu"},
	"eu-south-2":     {41.6, -0.9, "eu"},
	"eu-west-1":      {53.3, -6.3, "eu"},
	"eu-west-2":      {51.5, -0.1, "uk"},
	"eu-west-3":      {48.9, 2.35, "eu"},
	"me-central-1":   {24.5, 54.4, "me"},
	"me-south-1":     {26.1, 50.6, "me"},
	"us-east-1":      {39.0, -77.5, "us"},
	"us-east-2":      {40.0, -83.0, "us"},
	"us-west-1":      {37.4, -122.0, "us"},
	"us-west-2":      {45.6, -121.2, "us"},
	// Azure
	"centralus":      {41.6, -93.6, "us"},
	"eastus":         {37.4, -79.0, "us"},
	"eastus2":        {36.7, -78.4, "us"},
	"northcentralus": {41.9, -87.6, "us"},
	"southcentralus": {29.4, -98.5, "us"},
	"westcentralus":  {41.1, -104.8, "us"},
	"westus":         {37.8, -122.4, "us"},
	"westus2":        {47.2, -119.9, "us"},
	"westus3":        {33.4, -112.1, "us"},
	// GCP
	"africa-south1":           {-26.2, 28.0, "africa"},
	"asia-east1":              {24.0, 120.5, "apac"},
	"asia-east2":              {22.3, 114.2, "apac"},
	"asia-northeast1":         {35.7, 139.7, "apac"},
	"asia-northeast2":         {34.7, 135.5, "apac"},
	"asia-northeast3":         {37.6, 127.0, "apac"},
	"asia-south1":             {19.1, 72.9, "apac"},
	"asia-south2":             {28.6, 77.2, "apac"},
	"asia-southeast1":         {1.35, 103.8, "apac"},
	"asia-southeast2":         {-6.2, 106.8, "apac"},
	"australia-southeast1":    {-33.9, 151.2, "apac"},
	"australia-southeast2":    {-37.8, 145.0, "apac"},
	"europe-central2":         {52.2, 21.0, "eu"},
	"europe-north1":           {60.6, 27.2, "eu"},
	"europe-southwest1":       {40.4, -3.7, "eu"},
	"europe-west1":            {50.4, 3.8, "eu"},
	"europe-west10":           {52.5, 13.4, "eu"},
	"europe-west12":           {45.1, 7.7, "eu"},
	"europe-west2":            {51.5, -0.1, "uk"},
	"europe-west3":            {50.1, 8.7, "eu"},
	"europe-west4":            {53.4, 6.8, "eu"},
	"europe-west6":            {47.4, 8.5, "ch"},
	"europe-west8":            {45.5, 9.2, "eu"},
	"europe-west9":            {48.9, 2.35, "eu"},
	"me-central1":             {25.3, 51.5, "me"},
	"me-central2":             {26.4, 50.1, "me"},
	"me-west1":                {32.1, 34.8, "me"},
	"northamerica-northeast1": {45.5, -73.6, "ca"},
	"northamerica-northeast2": {43.7, -79.4, "ca"},
	"southamerica-east1":      {-23.5, -46.6, "latam"},
	"southamerica-west1":      {-33.4, -70.6, "latam"},
	"us-central1":             {41.3, -95.9, "us"},
	"us-east1":                {33.2, -80.0, "us"},
	"us-east4":                {39.0, -77.5, "us"},
	"us-east5":                {40.0, -83.0, "us"},
	"us-south1":               {32.8, -96.8, "us"},
	"us-west1":                {45.6, -121.2, "us"},
	"us-west2":                {34.1, -118.2, "us"},
	"us-west3":                {40.8, -111.9, "us"},
	"us-west4":                {36.2, -115.1, "us"},
	// Lambda (names not already above)
	"asia-northeast-1": {35.7, 139.7, "apac"},
	"asia-northeast-2": {37.6, 127.0, "apac"},
	"asia-south-1":     {19.1, 72.9, "apac"},
	"australia-east-1": {-33.9, 151.2, "apac"},
	"europe-central-1": {50.1, 8.7, "eu"},
	"europe-south-1":   {45.5, 9.2, "eu"},
	"me-west-1":        {32.1, 34.8, "me"},
	"us-east-3":        {38.9, -77.0, "us"},
	"us-midwest-1":     {41.9, -87.6, "us"},
	"us-south-1":       {30.3, -97.7, "us"},
	"us-south-2":       {32.8, -96.8, "us"},
	"us-south-3":       {29.8, -95.4, "us"},
	"us-west-3":        {40.8, -111.9, "us"},
	// RunPod (country codes)
	"CA": {45.5, -73.6, "ca"},
	"CZ": {50.1, 14.4, "eu"},
	"IS": {64.1, -21.9, "eea"},
	"NL": {52.4, 4.9, "eu"},
	"NO": {59.9, 10.8, "eea"},
	"RO": {44.4, 26.1, "eu"},
	"SE": {59.3, 18.1, "eu"},
	"US": {39.0, -95.0, "us"},
}

// jurisdiction of a region, "other" when unknown.
func jurisdiction(region string) string {
	if ri, ok := regions[region]; ok {
		return ri.Jurisdiction
	}
	return "other"
}

// rttMs estimates the round-trip time between two regions from the great
// circle distance: 2 ms plus 13.5 ms per 1000 km (fibre at ~2/3 c with
// typical route detours; Virginia-London comes out at ~80 ms, Virginia-Tokyo
// at ~150 ms).
func rttMs(a, b string) (float64, bool) {
	ra, oka := regions[a]
	rb, okb := regions[b]
	if !oka || !okb {
		return 0, false
	}
	const rad = math.Pi / 180
	dlat := (rb.Lat - ra.Lat) * rad
	dlon := (rb.Lon - ra.Lon) * rad
	h := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(ra.Lat*rad)*math.Cos(rb.Lat*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	km := 2 * 6371 * math.Asin(math.Sqrt(h))
	return math.Round((2+0.0135*km)*10) / 10, true
}

// rttTable builds Problem.RTTms over the given regions, one entry per
// unordered pair, the two regions in random order; each pair is left out
// with probability missing, so DefaultRTTms is exercised.
func rttTable(r *rand.Rand, names []string, missing float64) map[[2]string]float64 {
	names = append([]string(nil), names...)
	sort.Strings(names)
	out := map[[2]string]float64{}
	for i, a := range names {
		for _, b := range names[i+1:] {
			v, ok := rttMs(a, b)
			if !ok || r.Float64() < missing {
				continue
			}
			if r.IntN(2) == 0 {
				out[[2]string{a, b}] = v
			} else {
				out[[2]string{b, a}] = v
			}
		}
	}
	return out
}
