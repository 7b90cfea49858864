import HelloTarget
import ImgMapCLI

IMGMap.main(extraTargets: [HelloTarget.self])
