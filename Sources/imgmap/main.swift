import ImgMapCLI

IMGMap.main()
