package image

// Helpers of the internal tests that the external ones (package
// image_test, which may import the launcher) use too.
var (
	LayerTar    = layerTar
	TestImage   = testImage
	WriteLayout = writeLayout
	TestFile    = file
	TestService = service
)
