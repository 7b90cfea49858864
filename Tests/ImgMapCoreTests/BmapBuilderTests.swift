import Testing
@testable import ImgMapCore
